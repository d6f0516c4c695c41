"""CIFAR-sized images stored losslessly as one WebP mosaic: what weights/ ships them in.

CIFAR-10 photos barely compress under zlib (2.8 KB each), but a lossless WebP grid of them stores one in about
1.7 KB, so the shipped test images and the built-in training subset cost 40 % less of weights/' budget.
"""
from __future__ import annotations

import io

import numpy as np

MOSAIC_COLUMNS = 50


def encode_mosaic(images: np.ndarray) -> bytes:
    """(N, 32, 32, 3) uint8 -> lossless WebP of a MOSAIC_COLUMNS-wide grid of tiles, row-major, zero-padded."""
    from PIL import Image  # torchvision cannot encode WebP; Pillow is one of torchvision's own requirements

    rows = -(-len(images) // MOSAIC_COLUMNS)
    tiles = np.zeros((rows * MOSAIC_COLUMNS, *images.shape[1:]), np.uint8)
    tiles[: len(images)] = images
    grid = tiles.reshape(rows, MOSAIC_COLUMNS, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, -1, 3)
    out = io.BytesIO()
    Image.fromarray(grid).save(out, "WEBP", lossless=True, quality=100, method=4)
    return out.getvalue()


def decode_mosaic(data: np.ndarray | bytes, n: int) -> np.ndarray:
    """The first n tiles of a mosaic, as (n, 32, 32, 3) uint8."""
    from PIL import Image  # already loaded by the app, unlike torchvision.io (seconds to import on 2 cores)

    raw = data if isinstance(data, bytes) else data.tobytes()
    grid = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
    rows, cols = grid.shape[0] // 32, grid.shape[1] // 32  # the mosaic's own shape, whatever wrote it
    tiles = grid.reshape(rows, 32, cols, 32, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 32, 32, 3)
    if len(tiles) < n:
        raise ValueError(f"the mosaic holds {len(tiles)} images, not the {n} its labels say")
    return np.ascontiguousarray(tiles[:n])
