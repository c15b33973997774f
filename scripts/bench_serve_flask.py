"""The seeds' serving stack for the benchmark: Flask + PyTorch, one process per core.

Unlike the seed (which rebuilt the model from EFS on every request), the generator is loaded once
per worker, so the comparison with brs-serve is about the serving path, not that blunder. Same
weights as brs-serve: a brs run/checkpoint/export directory read through scripts/ugatit_torch.py.
Same request shape: POST /v1/translate with a raw image body or a multipart field `image`,
answering a PNG of the model's size.

  BRS_BENCH_MODEL_DIR=DIR gunicorn -w 2 -b 127.0.0.1:8000 --chdir scripts bench_serve_flask:app
  python scripts/bench_serve_flask.py DIR --port 8000 --workers 2   (gunicorn if installed, else
                                                                    werkzeug with one process per worker)
Each worker runs torch with BRS_BENCH_TORCH_THREADS intra-op threads (default 1: one worker per
core, each single-threaded, is how the seed's gunicorn deployment uses the cores).
"""
import argparse
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flask import Flask, Response, jsonify, request  # noqa: E402
from PIL import Image  # noqa: E402

import ugatit_torch  # noqa: E402

_model = None


def _generator():
    # Loaded lazily so each forked worker builds its own (torch state is not fork-safe).
    global _model
    if _model is None:
        torch.set_num_threads(int(os.environ.get("BRS_BENCH_TORCH_THREADS", "1")))
        gen, cfg = ugatit_torch.load_brs_generator(os.environ["BRS_BENCH_MODEL_DIR"])
        _model = (gen, cfg["img_size"])
    return _model


app = Flask(__name__)


@app.post("/v1/translate")
def translate():
    gen, size = _generator()
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
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)
    with torch.no_grad():
        out = gen(x)[0][0]
    arr = ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
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
    import time

    gen, size = _generator()
    n = int(request.args.get("n", "5"))
    x = torch.zeros(1, 3, size, size)
    times = []
    with torch.no_grad():
        for _ in range(n):
            t = time.perf_counter()
            gen(x)
            times.append(time.perf_counter() - t)
    return jsonify(seconds=sorted(times)[len(times) // 2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    os.environ["BRS_BENCH_MODEL_DIR"] = a.model_dir
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
