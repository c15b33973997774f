"""The Python baselines of the serving benchmark: Flask, one process per core, running the generator
with PyTorch (the seed's stack) or with ONNX Runtime (what a user would write instead of brs-serve
with that engine).

Unlike the seed (which rebuilt the model from EFS on every request), the generator is loaded once
per worker, so the comparison with brs-serve is about the serving path, not that blunder. Same
weights as brs-serve: a brs run/checkpoint/export directory read through scripts/ugatit_torch.py,
or, for ONNX Runtime, the model `brs-train export --format onnx` wrote from it (all of ONNX
Runtime's graph optimisations). Same request shape: POST /v1/translate with a raw image body or a
multipart field `image`, answering a PNG of the model's size.

  BRS_BENCH_MODEL_DIR=DIR gunicorn -w 2 -b 127.0.0.1:8000 --chdir scripts bench_serve_flask:app
  python scripts/bench_serve_flask.py DIR --port 8000 --workers 2   (gunicorn if installed, else
                                                                    werkzeug with one process per worker)
  python scripts/bench_serve_flask.py MODEL.onnx --port 8000 --workers 2   (ONNX Runtime)
Each worker runs BRS_BENCH_TORCH_THREADS intra-op threads (default 1: one worker per core, each
single-threaded, is how the seed's gunicorn deployment uses the cores).
"""
import argparse
import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from flask import Flask, Response, jsonify, request  # noqa: E402
from PIL import Image  # noqa: E402

_model = None


def _threads():
    return int(os.environ.get("BRS_BENCH_TORCH_THREADS", "1"))


def _torch_model(path):
    import torch

    import ugatit_torch

    torch.set_num_threads(_threads())
    gen, cfg = ugatit_torch.load_brs_generator(path)

    def forward(x):
        with torch.no_grad():
            return gen(torch.from_numpy(x))[0].numpy()

    return forward, cfg["img_size"]


def _onnx_model(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return (lambda x: sess.run(["image"], {"input": x})[0]), int(sess.get_inputs()[0].shape[-1])


def _generator():
    # Loaded lazily so each forked worker builds its own (torch state is not fork-safe).
    global _model
    if _model is None:
        path = os.environ["BRS_BENCH_MODEL_DIR"]
        _model = _onnx_model(path) if path.endswith(".onnx") else _torch_model(path)
    return _model


app = Flask(__name__)


@app.post("/v1/translate")
def translate():
    forward, size = _generator()
    f = request.files.get("image")
    data = f.read() if f is not None else request.get_data()
    try:
        img = Image.open(io.BytesIO(data))
        img = img.convert("RGB")
    except Exception as e:  # the baseline only needs to refuse, not classify
        return jsonify(error={"code": "undecodable", "message": str(e)}), 422
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s)).resize((size, size), Image.BILINEAR)
    x = (np.asarray(img, dtype=np.float32).transpose(2, 0, 1)[None] / 127.5 - 1).astype(np.float32)
    out = forward(x)[0]
    arr = np.rint((np.clip(out, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return Response(buf.getvalue(), mimetype="image/png")


@app.get("/readyz")
def readyz():
    _generator()
    return jsonify(status="ready")


@app.post("/forward-time")
def forward_time():
    """Seconds per forward pass of this worker's generator on one image (median of N)."""
    forward, size = _generator()
    n = int(request.args.get("n", "5"))
    x = np.zeros((1, 3, size, size), np.float32)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        forward(x)
        times.append(time.perf_counter() - t)
    return jsonify(seconds=sorted(times)[len(times) // 2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", help="a brs run, checkpoint or export directory, or an exported .onnx model")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    os.environ["BRS_BENCH_MODEL_DIR"] = os.path.abspath(a.model_dir)
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        from werkzeug.serving import run_simple

        print("gunicorn not installed; using werkzeug with one process per worker", file=sys.stderr)
        run_simple("127.0.0.1", a.port, app, processes=a.workers, threaded=False)
        return
    here = os.path.dirname(os.path.abspath(__file__))
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "-w", str(a.workers), "-b",
                               f"127.0.0.1:{a.port}", "--timeout", "300", "--chdir", here,
                               "--log-level", "warning", "bench_serve_flask:app"])


if __name__ == "__main__":
    main()
