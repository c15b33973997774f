#!/usr/bin/env python3
"""Documented commands must work as written: checks README.md and docs/*.md against the programs.

What it reads in each Markdown file: fenced code blocks (sh/bash/shell/console or unlabelled for
commands; hcl/terraform/tfvars for terraform variables) and inline code spans (which may wrap lines).
What it checks, asking the built binaries (target/debug by default) rather than a list kept here:

- A command line whose program is ours (brs-train, brs-serve, brs-dataset, brs-lambda, brs-aws, by
  name or path, `cargo run -p X --`, scripts/X, locust/run): the subcommand exists (`BIN --help`),
  every `--flag` exists for that subcommand (`BIN SUB --help`), and every `--set KEY=VALUE` key
  exists. brs-train's and brs-serve's configs refuse unknown keys, naming the keys they know, so the
  keys are read by giving each binary an unknown one (`--set <table>.__docs_check_probe__=0`).
  Placeholders (`KEY=VALUE`, `[--flag X]...`) are allowed. brs-lambda takes no flags (its
  configuration is its environment) and is never run; brs-aws is a library.
- scripts/X (and locust/X) named anywhere exist; as a command's program it must be executable, and
  its flags must appear in the script or the scripts/*.py it runs (or in that helper's argparse
  --help, for flags it builds at run time). `scripts/learn-harness --setting NAME=K=V;K=V` keys are
  brs-train keys.
- A span that is only flags (`--resume`, `--set max_batch=8`) must name a flag of one of our
  programs, and its `--set` key a key of brs-train or brs-serve.
- Terraform variables: `var.NAME`; `NAME = ...` in hcl/tfvars blocks (top level, or inside a
  `module` block); `NAME = ...` in a shell comment that mentions terraform; an inline span `NAME` or
  `NAME = value` tied to terraform by its words (`terraform NAME`, `terraform's NAME`, `NAME in
  terraform`, and the spans listed right after such a span). Each must be in terraform/variables.tf.
  `terraform output [-raw] NAME` must name an output of terraform/outputs.tf.
- Every `BRS_*` environment variable named is read or set somewhere in the code.
- A Rust path (`brs_image::detect::init_onnxruntime`) names modules of that crate, then an item its
  module's file mentions.
- Paths under the repository's top-level directories (`brs-serve/src/...`, `docs/...`,
  `terraform/...`) exist, and relative Markdown links and their #anchors resolve.
- In code blocks (whole commands, not the references inline spans make), the flags a subcommand's
  usage line requires are given.

Every problem is printed as FILE:LINE: message; the exit status is 1 if there is any.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import difflib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("brs-train", "brs-serve", "brs-dataset", "brs-lambda", "brs-aws")
COMMAND_LANGS = {"", "sh", "bash", "shell", "console", "zsh"}
HCL_LANGS = {"hcl", "terraform", "tf", "tfvars"}
PROBE = "__docs_check_probe__"
# Directories whose files the docs may name by path but which are generated or not in git.
UNCHECKED_TOP = {"target", "out", "dist", "data", "build", ".venv", ".git"}
FOREIGN = re.compile(r"\b(?:cargo|rustc|docker(?: build)?|curl|terraform|pip|git|python|aws|locust)(?:'s)?\s*[(:]?\s*$", re.I)
WRAPPERS = {"sudo", "exec", "time", "nice", "env", "command", "nohup"}
MODULE_META_ARGS = {"source", "version", "providers", "count", "for_each", "depends_on"}


@dataclass
class Problem:
    file: str
    line: int
    message: str


@dataclass
class Command:
    """One simple command (no pipes or lists) whose program is ours."""

    file: str
    line: int
    text: str
    program: str  # brs-train ... or a script path relative to the root
    args: list[str]
    kind: str  # "binary" or "script"
    in_block: bool = False  # from a code block (a whole command), not an inline span (a reference)


@dataclass
class Doc:
    path: Path
    rel: str
    lines: list[str]
    blocks: list[tuple[str, int, list[str]]] = field(default_factory=list)  # (lang, first line, lines)
    prose: str = ""  # the text with fenced lines blanked, so offsets map to lines


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------

FENCE = re.compile(r"^\s*(```+|~~~+)\s*([A-Za-z0-9_+-]*)")


def parse_doc(path: Path, root: Path) -> Doc:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    try:
        rel = str(path.resolve().relative_to(root))
    except ValueError:
        rel = str(path)
    doc = Doc(path=path, rel=rel, lines=lines)
    prose = []
    fence = None
    for i, line in enumerate(lines, start=1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = (m.group(1)[0] * 3, m.group(2).lower(), i + 1, [])
            prose.append("")
            continue
        if fence is not None:
            if line.strip().startswith(fence[0]) and line.strip().strip(fence[0][0]) == "":
                doc.blocks.append((fence[1], fence[2], fence[3]))
                fence = None
            else:
                fence[3].append(line)
            prose.append("")
            continue
        prose.append(line)
    if fence is not None:
        doc.blocks.append((fence[1], fence[2], fence[3]))
    doc.prose = "\n".join(prose)
    return doc


SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def spans(doc: Doc):
    """Inline code spans: (line, text with newlines as spaces, start offset, end offset)."""
    for m in SPAN.finditer(doc.prose):
        body = m.group(2)
        if "\n\n" in body or re.search(r"\n\s*\n", body):
            continue
        line = doc.prose.count("\n", 0, m.start()) + 1
        yield line, re.sub(r"\s*\n\s*", " ", body).strip(), m.start(), m.end()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"<[^>]+>", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(doc: Doc) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in doc.prose.split("\n"):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


# ---------------------------------------------------------------------------------------------
# Shell text -> simple commands
# ---------------------------------------------------------------------------------------------


def strip_comment(line: str) -> tuple[str, str]:
    """Splits a shell line into code and comment (a # at a word start, outside quotes)."""
    quote = None
    depth = 0
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"':
                continue
            continue
        if c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif c == "#" and depth == 0 and (i == 0 or line[i - 1] in " \t"):
            return line[:i], line[i + 1 :]
    return line, ""


def split_commands(code: str) -> list[str]:
    """Splits on ;, &&, ||, newlines and pipes written with spaces around them (a|b in usage text is an
    alternative, not a pipe), outside quotes and $(...)."""
    out, cur = [], []
    quote = None
    depth = 0
    i = 0
    while i < len(code):
        c = code[i]
        if quote:
            cur.append(c)
            if c == quote:
                quote = None
            i += 1
            continue
        if c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            two = code[i : i + 2]
            if two in ("&&", "||"):
                out.append("".join(cur))
                cur = []
                i += 2
                continue
            if c in ";\n" or (c == "|" and code[i - 1 : i] in (" ", "\t") and code[i + 1 : i + 2] in (" ", "\t")):
                out.append("".join(cur))
                cur = []
                i += 1
                continue
        cur.append(c)
        i += 1
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]


def tokenize(cmd: str) -> list[str]:
    """Shell words: quotes removed, $(...) kept inside its word."""
    words, cur = [], []
    have = False
    quote = None
    depth = 0
    for c in cmd:
        if quote:
            if c == quote:
                quote = None
            else:
                cur.append(c)
            continue
        if depth:
            cur.append(c)
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            continue
        if c in "'\"":
            quote = c
            have = True
        elif c == "(" and cur and cur[-1] == "$":
            cur.append(c)
            depth = 1
        elif c in " \t":
            if cur or have:
                words.append("".join(cur))
            cur, have = [], False
        else:
            cur.append(c)
    if cur or have:
        words.append("".join(cur))
    return words


def clean(word: str) -> str:
    """Removes usage-text decoration: [--flag], X..., trailing brackets."""
    prev = None
    while prev != word:
        prev = word
        word = word.strip("[]{}")
        if word.endswith("..."):
            word = word[:-3]
        if word.endswith("…"):
            word = word[:-1]
    return word


ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def classify(words: list[str]) -> tuple[str, str, list[str]] | None:
    """(kind, program, args) when the command's program is ours."""
    i = 0
    while i < len(words) and (ASSIGN.match(words[i]) or words[i] in WRAPPERS or words[i] in ("do", "then", "else", "$")):
        i += 1
    if i >= len(words):
        return None
    head, rest = words[i], words[i + 1 :]
    if head == "cargo" and rest[:1] == ["run"]:
        if "--" not in rest:
            return None
        opts, args = rest[: rest.index("--")], rest[rest.index("--") + 1 :]
        name = None
        for flag in ("--bin", "-p", "--package"):
            if flag in opts and opts.index(flag) + 1 < len(opts):
                name = opts[opts.index(flag) + 1]
                if flag == "--bin":
                    break
        if name in BINARIES:
            return ("binary", name, args)
        return None
    base = head.rsplit("/", 1)[-1]
    if base in BINARIES and ("/" not in head or re.search(r"(^|/)(target/[^/]+|bin)/[^/]+$", head)):
        return ("binary", base, rest)
    m = re.match(r"^(?:\./)?((?:scripts|locust)/[A-Za-z0-9_./-]+)$", head)
    if m:
        return ("script", m.group(1), rest)
    return None


def commands_of(text: str, file: str, line: int, in_block: bool = False) -> list[Command]:
    out = []
    for part in split_commands(text):
        words = [w for w in (clean(w) for w in tokenize(part)) if w != ""]
        got = classify(words)
        if got:
            out.append(Command(file, line, part, got[1], got[2], got[0], in_block))
    return out


# ---------------------------------------------------------------------------------------------
# Asking the programs
# ---------------------------------------------------------------------------------------------


@dataclass
class Help:
    ok: bool
    subcommands: list[str]
    flags: set[str]
    output: str
    required: set[str] = field(default_factory=set)  # flags the usage line names outside [ ]


def run(argv: list[str], timeout: float = 60) -> tuple[int, str]:
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)
    return p.returncode, p.stdout + p.stderr


def parse_help(code: int, text: str) -> Help:
    subs, flags = [], set()
    section = None
    for line in text.split("\n"):
        if re.match(r"^[A-Z][A-Za-z ]*:\s*$", line):
            section = line.strip().rstrip(":").lower()
            continue
        if section == "commands":
            m = re.match(r"^\s{1,4}([a-z][a-z0-9-]*)(\s|$)", line)
            if m and m.group(1) != "help":
                subs.append(m.group(1))
        m = re.match(r"^ {2,6}(?:-[A-Za-z0-9], +)?--([a-z0-9][a-z0-9-]*)", line)
        if m:
            flags.add(m.group(1))
    # "Usage: prog sub [OPTIONS] --config <CONFIG>" (continued on indented lines): what is outside
    # [ ] is required. Several usage lines are alternatives: only a flag all of them name is needed.
    m = re.search(r"^Usage:(.*(?:\n {6,}\S.*)*)", text, re.M)
    alternatives = [set(re.findall(r"--([a-z0-9][a-z0-9-]*)", re.sub(r"\[[^\]]*\]", "", u))) for u in m.group(1).split("\n")] if m else []
    required = set.intersection(*alternatives) if alternatives else set()
    return Help(code == 0 and ("Usage:" in text or "usage:" in text), subs, flags, text, required)


def keys_from_error(text: str) -> list[str] | None:
    if f"unknown field `{PROBE}`" not in text:
        if "there are no fields" in text:
            return []
        return None
    m = re.search(rf"unknown field `{PROBE}`, (?:expected|there are no fields)(.*)", text)
    if not m:
        return None
    return re.findall(r"`([^`]+)`", m.group(1).split("\n")[0])


class Programs:
    def __init__(self, root: Path, bin_dir: Path):
        self.root = root
        self.bin_dir = bin_dir
        self.helps: dict[tuple[str, str], Help] = {}
        self.keys: dict[tuple[str, str], list[str] | None] = {}
        self.key_outputs: dict[tuple[str, str], str] = {}
        self.script_text_cache: dict[str, str] = {}
        self.argparse_flags: dict[str, set[str]] = {}

    def path(self, binary: str) -> Path:
        return self.bin_dir / binary

    def missing(self, binary: str) -> bool:
        return not os.access(self.path(binary), os.X_OK)

    def fetch_helps(self, pairs: set[tuple[str, str]]) -> None:
        todo = [p for p in pairs if p not in self.helps and not self.missing(p[0])]

        def one(pair):
            binary, sub = pair
            argv = [str(self.path(binary))] + ([sub] if sub else []) + ["--help"]
            return pair, parse_help(*run(argv))

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for pair, h in pool.map(one, todo):
                self.helps[pair] = h

    def fetch_keys(self, wanted: set[tuple[str, str]]) -> None:
        """(binary, table) -> the keys that table accepts, from the binary's own error message."""
        todo = [w for w in wanted if w not in self.keys and not self.missing(w[0])]
        tmp = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        tmp.close()

        def one(w):
            binary, table = w
            probe = f"{table}.{PROBE}=0" if table else f"{PROBE}=0"
            if binary == "brs-train":
                argv = [str(self.path(binary)), "summary", "--config", tmp.name, "--set", probe]
            else:
                argv = [str(self.path(binary)), "--print-config", "--set", probe]
            _, out = run(argv)
            return w, keys_from_error(out), out

        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
                for w, keys, out in pool.map(one, todo):
                    self.keys[w] = keys
                    self.key_outputs[w] = out
        finally:
            os.unlink(tmp.name)

    # Scripts ----------------------------------------------------------------------------------

    def script_text(self, rel: str) -> str:
        if rel not in self.script_text_cache:
            try:
                self.script_text_cache[rel] = (self.root / rel).read_text(encoding="utf-8", errors="replace")
            except OSError:
                self.script_text_cache[rel] = ""
        return self.script_text_cache[rel]

    def helpers(self, rel: str) -> list[str]:
        text = self.script_text(rel)
        return sorted(set(re.findall(r"scripts/([A-Za-z0-9_]+\.py)", text)))

    def script_has_flag(self, rel: str, flag: str, dynamic: bool = True) -> bool:
        """The flag is written in the script or a helper it runs; with `dynamic`, or failing that,
        printed by a helper's argparse --help (for flags it builds at run time)."""
        pattern = re.compile(rf"(?<![\w-]){re.escape(flag)}(?![\w-])")
        if pattern.search(self.script_text(rel)):
            return True
        helpers = [f"scripts/{h}" for h in self.helpers(rel)]
        if any(pattern.search(self.script_text(h)) for h in helpers):
            return True
        if dynamic:
            for h in helpers:
                text = self.script_text(h)
                # Only a helper that builds flag names ("--" + name) can take one not written out.
                built = re.search(r"""["']--["']\s*\+|f["']--\{""", text)
                if built and "argparse" in text and "__main__" in text and flag in self.argparse_help(h):
                    return True
        return False

    def argparse_help(self, rel: str) -> set[str]:
        """Flags an argparse helper prints in --help (for flags built at run time)."""
        if rel not in self.argparse_flags:
            py = self.root / ".venv" / "bin" / "python"
            python = str(py) if os.access(py, os.X_OK) else sys.executable
            code, out = run([python, str(self.root / rel), "--help"], timeout=30)
            self.argparse_flags[rel] = set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", out)) if code == 0 else set()
        return self.argparse_flags[rel]


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


def is_placeholder_key(key: str) -> bool:
    return key == "" or not re.search(r"[a-z]", key) or key in ("key", "k")


def set_values(args: list[str]) -> list[str]:
    """The values given to --set in an argument list."""
    out = []
    for i, a in enumerate(args):
        if a == "--":
            break
        if a == "--set" and i + 1 < len(args):
            out.append(args[i + 1])
        elif a.startswith("--set="):
            out.append(a[len("--set=") :])
    return out


def flags_in(args: list[str]) -> list[str]:
    out = []
    for a in args:
        if a == "--":
            break
        if a.startswith("--") and len(a) > 2:
            out.append(a[2:].split("=", 1)[0])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--bin-dir", default=os.environ.get("BRS_DOCS_BIN_DIR"), help="default: ROOT/target/debug")
    ap.add_argument("--list", action="store_true", help="print what was extracted (commands, flag spans, terraform names)")
    ap.add_argument("files", nargs="*", help="Markdown files (default: README.md and docs/*.md)")
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    bin_dir = Path(args.bin_dir) if args.bin_dir else root / "target" / "debug"
    files = [Path(f) for f in args.files] or [root / "README.md"] + sorted((root / "docs").glob("*.md"))
    docs = [parse_doc(f, root) for f in files]
    problems: list[Problem] = []
    progs = Programs(root, bin_dir)

    # 1. Collect commands, bare flag spans and terraform names.
    commands: list[Command] = []
    bare: list[tuple[str, int, list[str]]] = []
    tf_names: list[tuple[str, int, str, str]] = []  # file, line, name, how
    tf_outputs: list[tuple[str, int, str]] = []
    for doc in docs:
        for lang, first, block in doc.blocks:
            if lang in COMMAND_LANGS:
                joined: list[tuple[int, str]] = []
                for n, raw in enumerate(block, start=first):
                    if joined and joined[-1][1].endswith("\\"):
                        joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + raw.strip())
                    else:
                        joined.append((n, re.sub(r"^\s*\$\s+", "", raw)))
                for n, line in joined:
                    code, comment = strip_comment(line)
                    commands += commands_of(code, doc.rel, n, in_block=True)
                    if re.search(r"\bterraform\b", comment, re.I):
                        for m in re.finditer(r"(?<![\w.\"/])([a-z][a-z0-9_]*)\s*=(?!=)", comment):
                            tf_names.append((doc.rel, n, m.group(1), "a terraform comment"))
            elif lang in HCL_LANGS:
                # tfvars lines at the top level, and a module block's arguments, are variables.
                depth, header = 0, None
                for n, raw in enumerate(block, start=first):
                    code = re.sub(r'"[^"]*"', '""', raw)
                    code = re.sub(r"(#|//).*$", "", code)
                    if depth == 0:
                        h = re.match(r"^\s*([a-z_]+)\b[^=]*\{", code)
                        header = h.group(1) if h else None
                    m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", code)
                    if m and depth == 0:
                        tf_names.append((doc.rel, n, m.group(1), "a terraform block"))
                    elif m and depth == 1 and header == "module" and m.group(1) not in MODULE_META_ARGS:
                        tf_names.append((doc.rel, n, m.group(1), "a module block"))
                    depth = max(0, depth + code.count("{") - code.count("}"))
        prev_tied_end = -1
        for line, text, start, end in spans(doc):
            if text.startswith("--"):
                # Another tool's flag, said so: "cargo's `--timings`", "docker build's `--x`".
                if not re.search(FOREIGN, doc.prose[max(0, start - 30) : start]):
                    words = [w for w in (clean(w) for w in tokenize(text)) if w]
                    bare.append((doc.rel, line, words))
            else:
                cmds = commands_of(text, doc.rel, line)
                # A lone program name, or a Python module's path, is a mention, not a command.
                for c in cmds:
                    if c.args or (c.kind == "script" and not c.program.endswith(".py")):
                        commands.append(c)
            m = re.match(r"^([a-z][a-z0-9_]*)(\s*=\s*.+)?$", text)
            if m:
                before = doc.prose[max(0, start - 40) : start]
                after = doc.prose[end : end + 20]
                gap = doc.prose[prev_tied_end:start] if prev_tied_end >= 0 else None
                tied = (
                    re.search(r"\bterraform(?:'s)?(?:\s+variables?)?\s*[:(]?\s*$", before, re.I)
                    or re.match(r"^\s+(?:in|of|from)\s+terraform\b|^\s*\(terraform\)", after, re.I)
                    or (gap is not None and re.fullmatch(r"\s*(?:,|/|,?\s*and|,?\s*or)\s*", gap))
                )
                if tied:
                    tf_names.append((doc.rel, line, m.group(1), "tied to terraform in the text"))
                    prev_tied_end = end
                else:
                    prev_tied_end = -1
            else:
                prev_tied_end = -1
        whole = "\n".join(doc.lines)
        for m in re.finditer(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", whole):
            tf_names.append((doc.rel, whole.count("\n", 0, m.start()) + 1, m.group(1), "var."))
        for m in re.finditer(r"\bterraform\s+output(?:\s+-[a-z-]+)*\s+([a-z_][a-z0-9_]*)", whole):
            tf_outputs.append((doc.rel, whole.count("\n", 0, m.start()) + 1, m.group(1)))

    if args.list:
        for c in commands:
            print(f"{c.file}:{c.line}: {c.kind} {c.program} {c.args}")
        for file, line, words in bare:
            print(f"{file}:{line}: flags {words}")
        for file, line, name, how in tf_names:
            print(f"{file}:{line}: terraform variable {name} ({how})")
        for file, line, name in tf_outputs:
            print(f"{file}:{line}: terraform output {name}")

    # 2. Ask the binaries (in parallel): every subcommand's help, and the config keys needed.
    # All three are always asked: a flag span (`--resume`) may belong to any of them.
    runnable = ["brs-dataset", "brs-serve", "brs-train"]
    reported_missing = set()
    for c in commands:
        if c.kind == "binary" and c.program in runnable and progs.missing(c.program) and c.program not in reported_missing:
            reported_missing.add(c.program)
            problems.append(Problem(c.file, c.line, f"{progs.path(c.program)} is missing: build the workspace first (cargo build; scripts/test does it before this check)"))
    for b in runnable:
        if progs.missing(b) and b not in reported_missing:
            reported_missing.add(b)
            problems.append(Problem(docs[0].rel if docs else "-", 1, f"{progs.path(b)} is missing: build the workspace first (cargo build; scripts/test does it before this check)"))
    progs.fetch_helps({(b, "") for b in runnable})
    for b in runnable:
        h = progs.helps.get((b, ""))
        if h is not None and not h.ok:
            problems.append(Problem(docs[0].rel if docs else "-", 1, f"`{progs.path(b)} --help` failed: {h.output.strip()[:300]}"))
    progs.fetch_helps({(b, s) for b in runnable if (b, "") in progs.helps for s in progs.helps[(b, "")].subcommands})

    def all_flags(binary: str) -> dict[str, list[str]]:
        """flag -> the subcommands (or "" for the top level) that take it."""
        out: dict[str, list[str]] = {}
        for (b, s), h in progs.helps.items():
            if b == binary:
                for f in h.flags:
                    out.setdefault(f, []).append(s)
        return out

    wanted_keys: set[tuple[str, str]] = set()
    set_checks: list[tuple[str, int, str, list[str]]] = []  # file, line, key, binaries allowed

    # 3. Commands.
    for c in commands:
        where = (c.file, c.line)
        if c.kind == "script":
            path = root / c.program
            if not path.exists():
                problems.append(Problem(*where, f"`{c.program}` does not exist"))
                continue
            if c.program.endswith(".py"):
                problems.append(Problem(*where, f"`{c.program}` is a Python module, not a program: write what runs it (e.g. the script that calls it)"))
                continue
            if not os.access(path, os.X_OK):
                problems.append(Problem(*where, f"`{c.program}` is not executable"))
                continue
            for f in flags_in(c.args):
                if f in ("help", "h"):
                    continue
                if not progs.script_has_flag(c.program, "--" + f):
                    problems.append(Problem(*where, f"`{c.program}` has no flag --{f}"))
            if c.program == "scripts/learn-harness":
                for i, a in enumerate(c.args):
                    if a == "--setting" and i + 1 < len(c.args):
                        _, _, rest = c.args[i + 1].partition("=")
                        for kv in rest.split(";"):
                            key = kv.split("=", 1)[0].strip()
                            if kv.strip() and not is_placeholder_key(key):
                                set_checks.append((c.file, c.line, key, ["brs-train"]))
                                wanted_keys.add(("brs-train", ""))
            continue
        if c.program == "brs-aws":
            problems.append(Problem(*where, "brs-aws is a library, not a program"))
            continue
        if c.program == "brs-lambda":
            if flags_in(c.args) or [a for a in c.args if not a.startswith("-")]:
                problems.append(Problem(*where, "brs-lambda takes no arguments: it is configured by environment variables (docs/aws.md)"))
            continue
        top = progs.helps.get((c.program, ""))
        if top is None or not top.ok:
            continue  # reported above
        sub = ""
        rest = c.args
        if rest and not rest[0].startswith("-"):
            if rest[0] in top.subcommands:
                sub, rest = rest[0], rest[1:]
            elif top.subcommands:
                problems.append(Problem(*where, f"`{c.program}` has no subcommand `{rest[0]}` (its subcommands: {', '.join(top.subcommands)})"))
                continue
        elif top.subcommands and not top.flags - {"help", "version"} and flags_in(rest) and set(flags_in(rest)) - {"help", "version"}:
            f = sorted(set(flags_in(rest)) - {"help", "version"})[0]
            owners = sorted(s for s in all_flags(c.program).get(f, []) if s)
            hint = f" (a flag of {', '.join(f'`{c.program} {s}`' for s in owners)})" if owners else ""
            problems.append(Problem(*where, f"`{c.program}` needs a subcommand before --{f}{hint}"))
            continue
        h = progs.helps.get((c.program, sub))
        if h is None or not h.ok:
            problems.append(Problem(*where, f"`{c.program} {sub} --help` failed"))
            continue
        for f in flags_in(rest):
            if f in h.flags:
                continue
            owners = sorted(s or "(no subcommand)" for s in all_flags(c.program).get(f, []))
            hint = f"; it is a flag of: {', '.join(owners)}" if owners else ""
            problems.append(Problem(*where, f"`{c.program}{' ' + sub if sub else ''}` has no flag --{f}{hint}"))
        given = set(flags_in(rest))
        if c.in_block and "help" not in given:
            for f in sorted(h.required - given):
                problems.append(Problem(*where, f"`{c.program}{' ' + sub if sub else ''}` needs --{f}"))
        for value in set_values(rest):
            key = value.split("=", 1)[0].strip()
            if "=" not in value or is_placeholder_key(key):
                continue
            set_checks.append((c.file, c.line, key, [c.program]))
            wanted_keys.add((c.program, key.rsplit(".", 1)[0] if "." in key and c.program == "brs-serve" else ""))

    # 4. Bare flag spans: a flag of some program of ours.
    scripts = sorted({c.program for c in commands if c.kind == "script"} | {
        str(p.relative_to(root)) for p in (root / "scripts").iterdir() if p.is_file() and os.access(p, os.X_OK)
    } | ({"locust/run"} if (root / "locust" / "run").exists() else set()))
    binary_flags = set()
    for b in runnable:
        binary_flags |= set(all_flags(b))
    # Without every binary the flags are unknown: the missing binary is the problem already reported.
    for file, line, words in bare if not reported_missing else []:
        for f in flags_in(words):
            if f in binary_flags or f in ("help", "version"):
                continue
            present = [s for s in scripts if (root / s).exists()]
            if any(progs.script_has_flag(s, "--" + f, dynamic=False) for s in present):
                continue
            if any(progs.script_has_flag(s, "--" + f) for s in present):
                continue
            problems.append(Problem(file, line, f"--{f} is not a flag of any brs program or script"))
        for value in set_values(words):
            key = value.split("=", 1)[0].strip()
            if "=" in value and not is_placeholder_key(key):
                set_checks.append((file, line, key, ["brs-serve", "brs-train"]))
                wanted_keys.add(("brs-train", ""))
                wanted_keys.add(("brs-serve", key.rsplit(".", 1)[0] if "." in key else ""))

    # 5. Config keys.
    progs.fetch_keys({w for w in wanted_keys if w[0] in runnable})
    for file, line, key, allowed in set_checks:
        reasons = []
        for b in allowed:
            if b not in runnable or progs.missing(b):
                reasons = None
                break
            table, _, leaf = key.rpartition(".") if b == "brs-serve" else ("", "", key)
            if b == "brs-train" and "." in key:
                reasons.append(f"brs-train keys have no tables (`{key}`)")
                continue
            if (b, table) not in progs.keys:
                progs.fetch_keys({(b, table)})
            known = progs.keys.get((b, table))
            if known is None:
                out = progs.key_outputs.get((b, table), "").strip().split("\n")[-1][:200]
                reasons.append(f"could not list {b}'s keys{' under `' + table + '`' if table else ''} (it said: {out})")
                continue
            if leaf in known:
                reasons = None
                break
            near = difflib.get_close_matches(leaf, known, n=3)
            hint = f" (under `{table}`: {', '.join(known)})" if table else (f" (close: {', '.join(near)})" if near else "")
            reasons.append(f"{b} has no config key `{key}`{hint}")
        if reasons:
            problems.append(Problem(file, line, f"--set {key}: " + "; ".join(reasons)))

    # 6. Terraform.
    variables_tf = root / "terraform" / "variables.tf"
    outputs_tf = root / "terraform" / "outputs.tf"
    tf_vars = set(re.findall(r'^\s*variable\s+"([^"]+)"', variables_tf.read_text(), re.M)) if variables_tf.exists() else None
    tf_outs = set(re.findall(r'^\s*output\s+"([^"]+)"', outputs_tf.read_text(), re.M)) if outputs_tf.exists() else None
    for file, line, name, how in tf_names:
        if tf_vars is None:
            problems.append(Problem(file, line, "terraform/variables.tf is missing"))
        elif name not in tf_vars:
            problems.append(Problem(file, line, f"terraform has no variable `{name}` ({how}; terraform/variables.tf)"))
    for file, line, name in tf_outputs:
        if tf_outs is not None and name not in tf_outs:
            problems.append(Problem(file, line, f"terraform has no output `{name}` (terraform/outputs.tf)"))

    # 7. Environment variables: every BRS_* the docs name is read (or set) somewhere in the code.
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True)
    if listed.returncode == 0:
        corpus_files = listed.stdout.split()
    else:  # not a git checkout: every file outside the generated and hidden directories
        corpus_files = []
        for d, dirs, fs in os.walk(root, followlinks=True):
            dirs[:] = [x for x in dirs if x not in UNCHECKED_TOP and not x.startswith(".")]
            corpus_files += [str(Path(d, f).relative_to(root)) for f in fs]
    corpus = []
    for rel in corpus_files:
        if rel.endswith(".md") or rel.startswith("docs/") or not (root / rel).is_file():
            continue
        try:
            corpus.append((root / rel).read_text(encoding="utf-8", errors="ignore"))
        except OSError:
            pass
    code_env = set(re.findall(r"\bBRS_[A-Z0-9_]*[A-Z0-9]\b", "\n".join(corpus)))
    env_seen: set[str] = set()
    for doc in docs:
        for n, raw in enumerate(doc.lines, start=1):
            for m in re.finditer(r"\b(BRS_[A-Z0-9_]*[A-Z0-9])(\*?)", raw):
                name = m.group(1)
                if m.group(2) or name in env_seen:
                    continue
                env_seen.add(name)
                if name not in code_env:
                    problems.append(Problem(doc.rel, n, f"`{name}` is not read or set anywhere in the code"))

    # 8. Rust paths (`brs_image::detect::init_onnxruntime`): each module is a file of the crate, and
    # the first segment that is not a module is named in the file of the module before it.
    rust_seen: set[str] = set()
    for doc in docs:
        for n, raw in enumerate(doc.lines, start=1):
            for m in re.finditer(r"\b(brs_[a-z]+)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", raw):
                full = m.group(0)
                if full in rust_seen:
                    continue
                rust_seen.add(full)
                crate_dir = root / m.group(1).replace("_", "-")
                if not (crate_dir / "src").is_dir():
                    problems.append(Problem(doc.rel, n, f"`{full}`: no crate {crate_dir.name}"))
                    continue
                cur, file = crate_dir / "src", crate_dir / "src" / "lib.rs"
                for seg in m.group(2).split("::")[1:]:
                    if (cur / seg / "mod.rs").exists():
                        cur, file = cur / seg, cur / seg / "mod.rs"
                    elif (cur / f"{seg}.rs").exists():
                        cur, file = cur / seg, cur / f"{seg}.rs"
                    else:
                        text = file.read_text(encoding="utf-8", errors="replace") if file.exists() else ""
                        if not re.search(rf"\b{re.escape(seg)}\b", text):
                            problems.append(Problem(doc.rel, n, f"`{full}`: no module or item `{seg}` in {file.relative_to(root)}"))
                        break

    # 9. Paths and links.
    tops = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")} - UNCHECKED_TOP
    path_re = re.compile(r"(?<![\w./@:-])(?:\./)?((?:" + "|".join(re.escape(t) for t in sorted(tops)) + r")/[A-Za-z0-9_.\-/]*[A-Za-z0-9_/])")
    anchor_cache: dict[Path, set[str]] = {}
    for doc in docs:
        for n, raw in enumerate(doc.lines, start=1):
            for m in path_re.finditer(raw):
                rel = m.group(1)
                if "*" in rel or "..." in rel or re.search(r"[A-Z]{3,}", rel.split("/")[-1]):
                    continue  # a glob or a placeholder (RUN, NAME, ...)
                if raw[: m.start()].endswith(("--features ", "--features=")):
                    continue  # a crate's feature (brs-serve/aws), not a path
                if not (root / rel).exists():
                    problems.append(Problem(doc.rel, n, f"`{rel}` does not exist"))
            for m in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", raw):
                target = m.group(1)
                if re.match(r"^[a-z]+:", target) or target.startswith("//"):
                    continue
                file_part, _, frag = target.partition("#")
                dest = (doc.path.parent / file_part).resolve() if file_part else doc.path.resolve()
                if not dest.exists():
                    problems.append(Problem(doc.rel, n, f"link to `{target}`: no such file"))
                    continue
                if frag and dest.suffix == ".md":
                    if dest not in anchor_cache:
                        anchor_cache[dest] = anchors(parse_doc(dest, root))
                    if frag not in anchor_cache[dest]:
                        problems.append(Problem(doc.rel, n, f"link to `{target}`: no heading with that anchor"))

    problems = list({(p.file, p.line, p.message): p for p in problems}.values())
    for p in sorted(problems, key=lambda p: (p.file, p.line, p.message)):
        print(f"{p.file}:{p.line}: {p.message}")
    sys.stdout.flush()
    n_keys = len(set_checks)
    print(
        f"docs check: {len(docs)} files, {len(commands)} commands of ours, {n_keys} --set keys, "
        f"{len(tf_names)} terraform variables and {len(tf_outputs)} outputs named: "
        f"{len(problems)} problem{'s' if len(problems) != 1 else ''}",
        file=sys.stderr,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
