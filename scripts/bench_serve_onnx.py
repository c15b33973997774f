"""What a user would write instead of brs-serve with ONNX Runtime: Flask + onnxruntime, one process
per core, serving the same weights exported by `brs-train export --format onnx`.

Same request shape and image path as the Flask + PyTorch baseline (scripts/bench_serve_flask.py):
POST /v1/translate with a raw image body or a multipart field `image`, centre crop, bilinear resize
to the model's size, a PNG back. The session is built once per worker, with all of ONNX
Runtime's graph optimisations.

  python scripts/bench_serve_onnx.py MODEL.onnx --port 8000 --workers 2
Each worker's session runs BRS_BENCH_ORT_THREADS intra-op threads (default 1: one single-threaded
worker per core, as the seed's gunicorn deployment uses the cores).
"""
import argparse
import io
import os
import sys
import time

import numpy as np
from flask import Flask, Response, jsonify, request
from PIL import Image

_session = None


def _model():
    # Built lazily so each forked worker owns its session.
    global _session
    if _session is None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("BRS_BENCH_ORT_THREADS", "1"))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(os.environ["BRS_BENCH_ONNX_MODEL"], opts,
                                    providers=["CPUExecutionProvider"])
        size = sess.get_inputs()[0].shape[-1]
        _session = (sess, int(size))
    return _session


def _forward(sess, x):
    return sess.run(["image"], {"input": x})[0]


app = Flask(__name__)


@app.post("/v1/translate")
def translate():
    sess, size = _model()
    f = request.files.get("image")
    data = f.read() if f is not None else request.get_data()
    try:
        img = Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as e:  # the baseline only needs to refuse, not classify
        return jsonify(error={"code": "undecodable", "message": str(e)}), 422
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s)).resize((size, size), Image.BILINEAR)
    x = (np.asarray(img, dtype=np.float32).transpose(2, 0, 1)[None] / 127.5 - 1).astype(np.float32)
    out = _forward(sess, x)[0]
    arr = np.rint((np.clip(out, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return Response(buf.getvalue(), mimetype="image/png")


@app.get("/readyz")
def readyz():
    _model()
    return jsonify(status="ready")


@app.post("/forward-time")
def forward_time():
    """Seconds per forward pass of this worker's session on one image (median of N)."""
    sess, size = _model()
    n = int(request.args.get("n", "5"))
    x = np.zeros((1, 3, size, size), np.float32)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        _forward(sess, x)
        times.append(time.perf_counter() - t)
    return jsonify(seconds=sorted(times)[len(times) // 2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    os.environ["BRS_BENCH_ONNX_MODEL"] = os.path.abspath(a.model)
    here = os.path.dirname(os.path.abspath(__file__))
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "-w", str(a.workers), "-b",
                               f"127.0.0.1:{a.port}", "--timeout", "300", "--chdir", here,
                               "--log-level", "warning", "bench_serve_onnx:app"])


if __name__ == "__main__":
    main()
