"""Lays out before/after pairs side by side in one PNG (used by scripts/demo).

usage: demo_sheet.py OUT.png BEFORE1 AFTER1 [BEFORE2 AFTER2 ...]
"""
import os
import sys

from PIL import Image, ImageDraw

CELL = 192
PAD = 8
LABEL = 18


def main():
    out, files = sys.argv[1], sys.argv[2:]
    if not files or len(files) % 2:
        sys.exit("usage: demo_sheet.py OUT.png BEFORE AFTER [BEFORE AFTER ...]")
    pairs = list(zip(files[0::2], files[1::2]))
    w = 2 * CELL + 3 * PAD
    h = LABEL + len(pairs) * (CELL + PAD) + PAD
    sheet = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 3), "photo", fill="black")
    draw.text((2 * PAD + CELL, 3), "brs translation", fill="black")
    for row, (before, after) in enumerate(pairs):
        y = LABEL + row * (CELL + PAD)
        for col, path in enumerate((before, after)):
            img = Image.open(path).convert("RGB").resize((CELL, CELL), Image.LANCZOS)
            sheet.paste(img, (PAD + col * (CELL + PAD), y))
    tmp = out + ".tmp.png"
    sheet.save(tmp)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
