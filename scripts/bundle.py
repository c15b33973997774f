"""ELF plumbing for release bundles: the library closure, the manifest, and the bundle's rules.

Used by scripts/package (closure, manifest) and by the bundle checks (check). Standard library only,
plus binutils' readelf: the build machine's venv Python runs it, the bundle itself has no Python.

    bundle.py closure --root BIN... --search DIR... [--extra LIB...] [--allow-system NAME...]
    bundle.py manifest TREE --out TREE/manifest.json --set key=value... --set-json key=JSON...
    bundle.py check TREE [--flavour cpu|cuda|onnx]
    bundle.py flavour NAME binaries|cargo|target-dir|zstd-level    (for scripts/package, a word a line)
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

# Libraries the target OS provides (Amazon Linux 2023, Lambda's provided.al2023, a minimal Debian):
# glibc's and the GCC runtime's. Everything else a bundled ELF needs must be inside the bundle.
SYSTEM_LIBS = {
    "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1",
    "libresolv.so.2", "ld-linux-x86-64.so.2", "libstdc++.so.6", "libgcc_s.so.1",
}
# What the cuda flavour takes from a GPU host: the NVIDIA driver's user-space libraries (they must match
# the kernel driver, so never bundled) and zlib, which cuDNN links (in every base image: AL2023, Debian).
CUDA_HOST_LIBS = {"libcuda.so.1", "libnvidia-ml.so.1", "libz.so.1"}
# The newest symbol version of each OS library namespace that Amazon Linux 2023 provides (glibc 2.34,
# GCC 11's libstdc++ and libgcc_s). A bundle needing more would not start there.
MAX_VERSIONS = {"GLIBC": (2, 34), "GLIBCXX": (3, 4, 29), "CXXABI": (1, 3, 13), "GCC": (11,)}
BINARIES = ("brs-serve", "brs-train", "brs-dataset", "brs-lambda")
# What each flavour is built from: its binaries, the cargo arguments that select their packages and
# features (the build, and the licence walk over exactly what was compiled in), the target directory
# (the onnx flavour's binaries, built without libtorch, never replace the others'), and the archive's
# zstd level: 3 for the libtorch flavours (0.5 and 3.3 GB unpacked), 19 for the onnx one, whose
# packed size is its point (39.0 MB at 3, 32.5 at 19, 40 s on two cores; docs/aws.md).
FLAVOURS = {
    "cpu": {"binaries": BINARIES, "cargo": [a for b in BINARIES for a in ("-p", b)], "target_dir": "target",
            "zstd_level": "3"},
    "onnx": {"binaries": ("brs-serve", "brs-lambda"),
             "cargo": ["-p", "brs-serve", "-p", "brs-lambda", "--no-default-features", "--features", "brs-serve/aws"],
             "target_dir": "target/onnx", "zstd_level": "19"},
}
FLAVOURS["cuda"] = FLAVOURS["cpu"]
# libtorch's libraries: the onnx flavour carries none.
TORCH_LIB = re.compile(r"lib(torch|c10|gomp|cudart|cupti|cuda|cudnn|cublas|nccl|nv)")


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def readelf(*args: str) -> str:
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True, text=True).stdout


def dynamic(path: Path) -> dict:
    """NEEDED, RUNPATH, RPATH and SONAME of one ELF file."""
    out = {"needed": [], "runpath": None, "rpath": None, "soname": None}
    for line in readelf("-d", str(path)).splitlines():
        m = re.search(r"\((NEEDED|RUNPATH|RPATH|SONAME)\)\s+.*?\[(.*)\]", line)
        if not m:
            continue
        kind, value = m.group(1), m.group(2)
        if kind == "NEEDED":
            out["needed"].append(value)
        else:
            out[kind.lower()] = value
    return out


def version_needs(path: Path) -> dict[str, set[str]]:
    """Symbol versions the file needs, by the library that must define them (readelf -V)."""
    needs: dict[str, set[str]] = {}
    current = None
    in_needs = False
    for line in readelf("-V", str(path)).splitlines():
        if "Version needs section" in line:
            in_needs = True
            continue
        if in_needs and line.startswith("Version ") and "needs" not in line:
            in_needs = False
        if not in_needs:
            continue
        m = re.search(r"File: (\S+)", line)
        if m:
            current = m.group(1)
            needs.setdefault(current, set())
            continue
        m = re.search(r"Name: (\S+)", line)
        if m and current:
            needs[current].add(m.group(1))
    return needs


def parse_version(tag: str) -> tuple[str, tuple[int, ...]] | None:
    m = re.fullmatch(r"(GLIBC|GLIBCXX|CXXABI|GCC)_([0-9.]+)", tag)
    if not m:
        return None
    return m.group(1), tuple(int(x) for x in m.group(2).split(".") if x)


def find_lib(name: str, search: list[Path]) -> Path | None:
    for d in search:
        p = d / name
        if p.exists():
            return p
    return None


def closure(roots: list[Path], search: list[Path], extra: list[str], allow: set[str]) -> tuple[dict[str, Path], dict[str, set[str]]]:
    """Walks NEEDED from the roots (and the named dlopen'd extras) through the search directories.

    Returns the libraries to bundle (name -> source file) and, for each system library, who needs it.
    Raises SystemExit naming the first library that is neither found nor allowed from the system.
    """
    found: dict[str, Path] = {}
    system: dict[str, set[str]] = {}
    todo: list[tuple[str, str]] = []
    for r in roots:
        todo += [(n, r.name) for n in dynamic(r)["needed"]]
    for name in extra:
        todo.append((name, "dlopen"))
    while todo:
        name, by = todo.pop()
        if name in found:
            continue
        if name in allow:
            system.setdefault(name, set()).add(by)
            continue
        lib = find_lib(name, search)
        if lib is None:
            raise SystemExit(f"bundle: {name} (needed by {by}) is neither in {', '.join(map(str, search))} nor an OS library")
        found[name] = lib
        todo += [(n, name) for n in dynamic(lib)["needed"]]
    return found, system


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_files(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*") if (p.is_file() or p.is_symlink()) and p.name != "manifest.json")


def cmd_closure(args) -> int:
    allow = SYSTEM_LIBS | set(args.allow_system or [])
    found, system = closure([Path(r) for r in args.root], [Path(s) for s in args.search], args.extra or [], allow)
    print(json.dumps({"libs": {k: str(v) for k, v in sorted(found.items())},
                      "system": {k: sorted(v) for k, v in sorted(system.items())}}, indent=1))
    return 0


def cmd_manifest(args) -> int:
    tree = Path(args.tree)
    manifest: dict = {}
    for kv in args.set or []:
        k, _, v = kv.partition("=")
        manifest[k] = v
    for kv in args.set_json or []:
        k, _, v = kv.partition("=")
        manifest[k] = json.loads(v)
    files = {}
    for p in tree_files(tree):
        rel = str(p.relative_to(tree))
        entry = {"size": p.stat().st_size, "sha256": sha256(p), "mode": oct(p.stat().st_mode & 0o777)}
        if is_elf(p):
            d = dynamic(p)
            entry["needed"] = d["needed"]
            if d["runpath"]:
                entry["runpath"] = d["runpath"]
        files[rel] = entry
    manifest["files"] = files
    manifest["system_libraries"] = sorted({n for f in files.values() for n in f.get("needed", []) if n in SYSTEM_LIBS | CUDA_HOST_LIBS})
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    tmp.replace(out)
    return 0


def check_tree(tree: Path, flavour: str | None) -> list[str]:
    """Every rule a bundle must keep; returns the violations (empty: the bundle is sound)."""
    problems: list[str] = []
    manifest_path = tree / "manifest.json"
    if not manifest_path.is_file():
        return [f"{manifest_path} is missing"]
    manifest = json.loads(manifest_path.read_text())
    if flavour and manifest.get("flavour") != flavour:
        problems.append(f"manifest flavour is {manifest.get('flavour')}, expected {flavour}")
    flavour = flavour or manifest.get("flavour")
    if flavour not in FLAVOURS:
        return problems + [f"unknown flavour {flavour!r}"]
    binaries = FLAVOURS[flavour]["binaries"]
    keys = ["name", "version", "git_commit", "flavour", "onnxruntime_version", "files"]
    if flavour != "onnx":
        keys.append("libtorch_version")
    for key in keys:
        if not manifest.get(key):
            problems.append(f"manifest lacks {key}")

    for b in binaries:
        p = tree / "bin" / b
        if not (p.is_file() and os.access(p, os.X_OK) and is_elf(p)):
            problems.append(f"bin/{b} is missing or not an executable ELF file")
    extra_bins = sorted({p.name for p in (tree / "bin").iterdir()} - set(binaries)) if (tree / "bin").is_dir() else []
    if extra_bins:
        problems.append(f"bin/ holds unexpected files {extra_bins}")
    for rel in ("share/brs/models/centerface.onnx", "share/brs/configs/demo.toml", "share/licenses"):
        if not (tree / rel).exists():
            problems.append(f"{rel} is missing")

    # The manifest lists exactly the files there are, with their hashes.
    listed = set(manifest.get("files", {}))
    present = {str(p.relative_to(tree)) for p in tree_files(tree)}
    if listed != present:
        problems.append(f"manifest and tree differ: only listed {sorted(listed - present)[:5]}, only present {sorted(present - listed)[:5]}")
    for rel in sorted(listed & present):
        if manifest["files"][rel]["sha256"] != sha256(tree / rel):
            problems.append(f"{rel}: sha256 differs from the manifest")

    # ELF rules: RUNPATH only inside the bundle, every NEEDED satisfied by lib/ or the OS, and no
    # symbol version newer than Amazon Linux 2023 has.
    libdir = tree / "lib"
    bundled = {p.name for p in libdir.iterdir()} if libdir.is_dir() else set()
    allow = SYSTEM_LIBS | (CUDA_HOST_LIBS if flavour == "cuda" else set())
    needed_by_anyone: set[str] = set()
    for p in sorted(tree.rglob("*")):
        if not p.is_file() or not is_elf(p):
            continue
        rel = str(p.relative_to(tree))
        d = dynamic(p)
        if d["rpath"]:
            problems.append(f"{rel} has a DT_RPATH ({d['rpath']}); bundles use DT_RUNPATH")
        want = "$ORIGIN/../lib" if rel.startswith("bin/") else "$ORIGIN"
        if d["runpath"] != want:
            problems.append(f"{rel}: RUNPATH is {d['runpath']!r}, expected {want!r}")
        for entry in (d["runpath"] or "").split(":"):
            if entry and not entry.startswith("$ORIGIN"):
                problems.append(f"{rel}: RUNPATH entry {entry!r} points outside the bundle")
        for n in d["needed"]:
            needed_by_anyone.add(n)
            if n not in bundled and n not in allow:
                problems.append(f"{rel} needs {n}, which is neither in lib/ nor an OS library")
        for lib, tags in version_needs(p).items():
            if lib in bundled:
                continue
            for tag in tags:
                v = parse_version(tag)
                if v and v[1] > MAX_VERSIONS[v[0]]:
                    problems.append(f"{rel} needs {tag} from {lib}; Amazon Linux 2023 has {v[0]} up to {'.'.join(map(str, MAX_VERSIONS[v[0]]))}")
    dlopened = set(manifest.get("dlopen", []))
    unused = sorted(bundled - needed_by_anyone - dlopened)
    if unused:
        problems.append(f"lib/ holds libraries nothing needs: {unused}")
    if flavour == "cpu":
        gpu = sorted(n for n in bundled if re.match(r"lib(torch_cuda|c10_cuda|cudnn|cublas|nccl|cufft|cusparse|curand|cusolver)", n))
        if gpu:
            problems.append(f"the cpu flavour carries CUDA kernels {gpu}")
    if flavour == "onnx":
        torch = sorted(n for n in bundled | needed_by_anyone if TORCH_LIB.match(n))
        if torch:
            problems.append(f"the onnx flavour carries or needs libtorch's libraries {torch}")
    return problems


def cmd_check(args) -> int:
    problems = check_tree(Path(args.tree), args.flavour)
    for p in problems:
        print(f"bundle check: FAIL {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"bundle check: ok ({args.tree})", file=sys.stderr)
    return 0


def cmd_flavour(args) -> int:
    value = FLAVOURS[args.name][args.field.replace("-", "_")]
    print("\n".join(value) if isinstance(value, (list, tuple)) else value)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("closure", help="shared libraries the roots need, as JSON")
    c.add_argument("--root", nargs="+", required=True)
    c.add_argument("--search", nargs="+", required=True)
    c.add_argument("--extra", nargs="*", help="libraries loaded with dlopen (names in the search dirs)")
    c.add_argument("--allow-system", nargs="*", help="further libraries the target OS provides")
    m = sub.add_parser("manifest", help="write manifest.json with file hashes")
    m.add_argument("tree")
    m.add_argument("--out", required=True)
    m.add_argument("--set", action="append", help="key=value (a string) for the manifest's top level")
    m.add_argument("--set-json", action="append", help="key=JSON for the manifest's top level")
    k = sub.add_parser("check", help="assert the bundle rules on an unpacked bundle")
    k.add_argument("tree")
    k.add_argument("--flavour", choices=sorted(FLAVOURS))
    f = sub.add_parser("flavour", help="what a flavour is built from, one word per line")
    f.add_argument("name", choices=sorted(FLAVOURS))
    f.add_argument("field", choices=["binaries", "cargo", "target-dir", "zstd-level"])
    args = ap.parse_args()
    return {"closure": cmd_closure, "manifest": cmd_manifest, "check": cmd_check,
            "flavour": cmd_flavour}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
