"""Python baseline for scripts/bench-crop: the same face-crop job written the usual way, with
onnxruntime + Pillow + numpy and the same CenterFace model, input sizing, thresholds, framing,
padding and output as `brs-dataset crop` (largest face, 256 px PNG, reflect padding).

usage: python bench_crop_baseline.py MODEL INPUT_DIR OUTPUT_DIR
Prints one JSON line: {"images": N, "crops": M, "seconds": S, "images_per_s": R}.
"""
import json
import math
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

MAX_SIDE, CONF, NMS_IOU, SIZE = 640, 0.5, 0.3, 256
TOP, BOTTOM, SIDE = 0.8, 0.3, 0.3


def input_size(w, h):
    s = min(MAX_SIDE / max(w, h), 1.0)
    r = lambda v: max(32, math.ceil(max(1, round(v * s)) / 32) * 32)
    return r(w), r(h)


def nms(boxes, scores, thr):
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
        iou = inter / (area(boxes[i]) + area(boxes[order[1:]]) - inter)
        order = order[1:][iou <= thr]
    return keep


def detect(sess, img):
    w, h = img.size
    iw, ih = input_size(w, h)
    x = np.asarray(img.resize((iw, ih), Image.BILINEAR), dtype=np.float32).transpose(2, 0, 1)[None]
    heat, scale, off, _lms = sess.run(None, {sess.get_inputs()[0].name: x})
    r, c = np.where(heat[0, 0] > CONF)
    if r.size == 0:
        return []
    bh, bw = np.exp(scale[0, 0, r, c]) * 4, np.exp(scale[0, 1, r, c]) * 4
    x1 = np.clip((c + off[0, 1, r, c] + 0.5) * 4 - bw / 2, 0, iw)
    y1 = np.clip((r + off[0, 0, r, c] + 0.5) * 4 - bh / 2, 0, ih)
    boxes = np.stack([x1, y1, np.minimum(x1 + bw, iw), np.minimum(y1 + bh, ih)], 1)
    scores = heat[0, 0, r, c]
    keep = nms(boxes, scores, NMS_IOU)
    sx, sy = iw / w, ih / h
    return [boxes[i] / [sx, sy, sx, sy] for i in keep]


def crop(img, box):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left, right, top, bottom = x1 - SIDE * w, x2 + SIDE * w, y1 - TOP * h, y2 + BOTTOM * h
    side = max(right - left, bottom - top)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0, y0, s = round(cx - side / 2), round(cy - side / 2), max(1, round(side))
    a = np.asarray(img)
    H, W = a.shape[:2]
    pad = [max(0, -y0), max(0, y0 + s - H), max(0, -x0), max(0, x0 + s - W)]
    if any(pad):
        a = np.pad(a, ((pad[0], pad[1]), (pad[2], pad[3]), (0, 0)), mode="symmetric")
    sq = a[y0 + pad[0] : y0 + pad[0] + s, x0 + pad[2] : x0 + pad[2] + s]
    return Image.fromarray(np.ascontiguousarray(sq)).resize((SIZE, SIZE), Image.LANCZOS)


def main():
    model, src, dst = sys.argv[1:4]
    os.makedirs(dst, exist_ok=True)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    files = sorted(os.listdir(src))
    t0 = time.perf_counter()
    crops = 0
    for name in files:
        img = ImageOps.exif_transpose(Image.open(os.path.join(src, name))).convert("RGB")
        faces = detect(sess, img)
        if not faces:
            continue
        best = max(faces, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        crop(img, best).save(os.path.join(dst, os.path.splitext(name)[0] + ".png"))
        crops += 1
    dt = time.perf_counter() - t0
    print(json.dumps({"images": len(files), "crops": crops, "seconds": round(dt, 3), "images_per_s": round(len(files) / dt, 2)}))


if __name__ == "__main__":
    main()
