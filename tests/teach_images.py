"""Synthetic photos for the Teach tests: each class a coloured shape on a light background, at a random place,
size and shade, so that a few steps can learn them and no two images are the same."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

SHAPES = {"red square": ((220, 40, 40), "square"), "green disc": ((40, 170, 60), "disc"),
          "blue bar": ((40, 70, 220), "bar"), "yellow cross": ((230, 200, 30), "cross")}


def photo(kind: str, seed: int, size: int = 96, fmt: str = "PNG") -> bytes:
    """One image of the class `kind` (a key of SHAPES) as file bytes."""
    rng = np.random.default_rng(seed)
    color, shape = SHAPES[kind]
    back = tuple(int(v) for v in rng.integers(200, 250, 3))
    img = Image.new("RGB", (size, size), back)
    draw = ImageDraw.Draw(img)
    s = int(rng.integers(size // 3, size // 2))
    x, y = (int(v) for v in rng.integers(4, size - s - 4, 2))
    shade = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in color)
    if shape == "square":
        draw.rectangle([x, y, x + s, y + s], fill=shade)
    elif shape == "disc":
        draw.ellipse([x, y, x + s, y + s], fill=shade)
    elif shape == "bar":
        draw.rectangle([x, y + s // 3, x + s, y + 2 * s // 3], fill=shade)
    else:
        draw.rectangle([x + s // 3, y, x + 2 * s // 3, y + s], fill=shade)
        draw.rectangle([x, y + s // 3, x + s, y + 2 * s // 3], fill=shade)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def small(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(32x32, 64x64 thumbnail) of one such photo, as the Teach page keeps it."""
    from resnet_demo.data.images import THUMB_SIDE, load_small

    return load_small(photo(kind, seed), kind, thumb_side=THUMB_SIDE)
