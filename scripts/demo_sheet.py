"""Lays out rows of (photo, brs translation, rendering) side by side in one PNG (used by scripts/demo).

usage: demo_sheet.py [--caption TEXT] [--groups 2] OUT.png PHOTO1 TRANSLATION1 RENDERING1 [PHOTO2 ...]

The rendering column is the drawn style computed directly from the photo: the answer the model
was never shown for these photos, so the sheet shows at a glance how close the translation is.
"""
import argparse
import os

from PIL import Image, ImageDraw

CELL = 192
PAD = 8
LABEL = 20
COLUMNS = ("photo", "brs translation", "rendering (the answer)")


def sheet(out, files, caption=None, groups=2):
    """Triples side by side, `groups` triples to a line (a wide sheet reads better than a tall one)."""
    triples = [files[i : i + 3] for i in range(0, len(files), 3)]
    groups = max(1, min(groups, len(triples)))
    lines = (len(triples) + groups - 1) // groups
    group_w = len(COLUMNS) * (CELL + PAD) + 2 * PAD
    top = LABEL + (LABEL if caption else 0)
    w = groups * group_w
    h = top + lines * (CELL + PAD) + PAD
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    if caption:
        draw.text((PAD, 4), caption, fill="black")
    for g in range(groups):
        for col, label in enumerate(COLUMNS):
            draw.text((g * group_w + PAD + col * (CELL + PAD), top - LABEL + 4), label, fill="black")
    for i, paths in enumerate(triples):
        x0 = (i % groups) * group_w
        y = top + (i // groups) * (CELL + PAD)
        for col, path in enumerate(paths):
            cell = Image.open(path).convert("RGB").resize((CELL, CELL), Image.LANCZOS)
            img.paste(cell, (x0 + PAD + col * (CELL + PAD), y))
    tmp = out + ".tmp.png"
    img.save(tmp)
    os.replace(tmp, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--caption")
    ap.add_argument("--groups", type=int, default=2, help="triples to a line")
    ap.add_argument("out")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    if len(args.files) % 3:
        ap.error("give the images three at a time: PHOTO TRANSLATION RENDERING")
    sheet(args.out, args.files, args.caption, args.groups)


if __name__ == "__main__":
    main()
