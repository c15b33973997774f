"""Licences for a release bundle: of every wheel a bundled library came from, of named extra wheels,
and of every Rust crate compiled into the binaries (from `cargo tree`, offline).

    bundle_licenses.py --site SITE --libs LIB... [--dist NAME...] --cargo-root DIR [--flavour F] --out DIR
"""

import argparse
import csv
import importlib.metadata as md
import shutil
import subprocess
import sys
from pathlib import Path

from bundle import FLAVOURS

LICENSE_PREFIXES = ("license", "licence", "notice", "copying", "thirdpartynotices", "third_party_notices")


def owners(site: Path, libs: list[str]) -> dict[str, md.Distribution]:
    """The installed distribution whose RECORD lists each library file name."""
    wanted = set(libs)
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions(path=[str(site)]):
        for f in dist.files or []:
            if f.name in wanted and f.name not in found:
                found[f.name] = dist
    return found


def licence_files(dist: md.Distribution) -> list[Path]:
    out = []
    for f in dist.files or []:
        name = f.name.lower()
        if name.startswith(LICENSE_PREFIXES) or "/licenses/" in str(f).lower():
            p = Path(dist.locate_file(f))
            if p.is_file():
                out.append(p)
    return out


def copy_dist(dist: md.Distribution, out: Path) -> int:
    name = dist.metadata["Name"]
    dest = out / f"{name}-{dist.version}"
    dest.mkdir(parents=True, exist_ok=True)
    files = licence_files(dist)
    for p in files:
        shutil.copyfile(p, dest / p.name)
    (dest / "METADATA-license.txt").write_text(
        f"{name} {dist.version}\nLicense: {dist.metadata.get('License') or dist.metadata.get('License-Expression') or 'see files'}\n")
    return len(files)


def rust_crates(cargo_root: Path, flavour: str = "cpu") -> list[dict]:
    """The crates compiled into the binaries: their normal dependencies, with the features a build
    of exactly these packages resolves. `cargo tree` needs only the packages it lists, so it works
    offline right after the release build; `cargo metadata` resolves every workspace member's
    dev-dependencies too and failed on a fresh clone, where the build had not downloaded them."""
    cmd = ["cargo", "tree", "--offline", "--locked", "--edges", "normal",
           "--target", "x86_64-unknown-linux-gnu", "--prefix", "none", "--no-dedupe",
           "--format", "{p}\t{l}\t{r}"]
    cmd += FLAVOURS[flavour]["cargo"]
    out = subprocess.run(cmd, cwd=cargo_root, check=True, capture_output=True, text=True).stdout
    crates: dict[tuple[str, str], dict] = {}
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) != 3:
            continue
        # "{p}" is "NAME vVERSION", with " (PATH)" for a local package.
        name, _, rest = fields[0].partition(" v")
        version = rest.split(" ", 1)[0]
        crates[(name, version)] = {"name": name, "version": version,
                                   "license": fields[1].strip(), "repository": fields[2].strip()}
    return [crates[k] for k in sorted(crates)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site", required=True)
    ap.add_argument("--libs", nargs="+", required=True)
    ap.add_argument("--dist", nargs="*", default=[])
    ap.add_argument("--cargo-root", required=True)
    ap.add_argument("--flavour", choices=sorted(FLAVOURS), default="cpu")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    site = Path(args.site)
    names = [Path(l).name for l in args.libs]
    found = owners(site, names)
    missing = sorted(set(names) - set(found))
    if missing:
        print(f"bundle_licenses: no installed wheel lists {missing}", file=sys.stderr)
        return 1
    dists = {d.metadata["Name"]: d for d in found.values()}
    for extra in args.dist:
        dist = next(iter(md.distributions(name=extra, path=[str(site)])), None)
        if dist is None:
            print(f"bundle_licenses: {extra} is not installed in {site}", file=sys.stderr)
            return 1
        dists[dist.metadata["Name"]] = dist
    for name, dist in sorted(dists.items()):
        if copy_dist(dist, out) == 0:
            print(f"bundle_licenses: warning: {name} ships no licence file; its metadata is recorded", file=sys.stderr)
    with open(out / "libraries.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["library", "wheel", "version"])
        for lib in sorted(found):
            w.writerow([lib, found[lib].metadata["Name"], found[lib].version])
    with open(out / "rust-crates.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["crate", "version", "license", "repository"])
        for p in rust_crates(Path(args.cargo_root), args.flavour):
            w.writerow([p["name"], p["version"], p.get("license") or p.get("license_file") or "", p.get("repository") or ""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
