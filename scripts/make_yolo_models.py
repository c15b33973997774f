"""Builds tiny ONNX models with the output layouts of YOLO face exports, for brs-dataset's tests.

Each model takes an image tensor and returns a constant detection tensor (plus 0 x the input's mean,
so the input is really consumed). The boxes are in 640x640 letterboxed input pixels; the Rust test
knows them and checks decoding, NMS and the mapping back to the original image exactly.

usage: python make_yolo_models.py OUT_DIR   (writes v5face.onnx v8.onnx v8pose.onnx e2e.onnx)
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

N = 64  # boxes per model (real exports have thousands; the layout is told from N > fields)

# (cx, cy, w, h, score) in input pixels; the test mirrors these numbers.
FACES = [
    (200.0, 300.0, 80.0, 100.0, 0.9),  # kept
    (204.0, 302.0, 80.0, 100.0, 0.8),  # overlaps the first: removed by NMS
    (480.0, 400.0, 60.0, 60.0, 0.7),  # kept
    (100.0, 200.0, 40.0, 40.0, 0.1),  # under the confidence threshold
]
LANDMARKS = [(180.0, 280.0), (220.0, 280.0), (200.0, 300.0), (185.0, 320.0), (215.0, 320.0)]


def v5face():
    out = np.zeros((1, N, 16), np.float32)
    for i, (cx, cy, w, h, s) in enumerate(FACES):
        out[0, i, :5] = (cx, cy, w, h, s)
        for k, (x, y) in enumerate(LANDMARKS):
            out[0, i, 5 + 2 * k : 7 + 2 * k] = (x + i, y + i)
        out[0, i, 15] = 1.0  # class score; total = obj * cls
    # obj high but class score low: 0.9 * 0.2 = 0.18 < 0.25
    out[0, 4, :5] = (560.0, 500.0, 40.0, 40.0, 0.9)
    out[0, 4, 15] = 0.2
    return out


def v8():
    # Two classes: the score is the best class.
    out = np.zeros((1, 6, N), np.float32)
    for i, (cx, cy, w, h, s) in enumerate(FACES):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4, i] = s if i % 2 == 0 else 0.05
        out[0, 5, i] = 0.05 if i % 2 == 0 else s
    return out


def v8pose():
    out = np.zeros((1, 20, N), np.float32)
    for i, (cx, cy, w, h, s) in enumerate(FACES):
        out[0, :5, i] = (cx, cy, w, h, s)
        for k, (x, y) in enumerate(LANDMARKS):
            out[0, 5 + 3 * k : 8 + 3 * k, i] = (x + i, y + i, 0.99)
    return out


def e2e():
    out = np.zeros((1, N, 6), np.float32)
    # NMS already done inside: only the two real faces, as x1 y1 x2 y2 score class.
    for row, i in enumerate((0, 2)):
        cx, cy, w, h, s = FACES[i]
        out[0, row] = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, s, 0.0)
    return out


def model(name, const, dynamic):
    dims = [1, 3, "H", "W"] if dynamic else [1, 3, 640, 640]
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(const.shape))
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["detections", "nothing"], ["output0"]),
    ]
    inits = [
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("detections", TensorProto.FLOAT, list(const.shape), const.flatten().tolist()),
    ]
    graph = helper.make_graph(nodes, name, [images], [output], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, fn, dynamic in [("v5face", v5face, False), ("v8", v8, True), ("v8pose", v8pose, False), ("e2e", e2e, False)]:
        tmp = os.path.join(out, f".{name}.onnx.tmp")
        onnx.save(model(name, fn(), dynamic), tmp)
        os.replace(tmp, os.path.join(out, f"{name}.onnx"))


if __name__ == "__main__":
    main()
