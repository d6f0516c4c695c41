"""The test images shipped beside the weights, so the app can show them without the data set.

weights/test_images.npz holds their test-set indices and labels, and the images as one lossless WebP mosaic of
32x32 tiles: CIFAR-10 photos barely compress under zlib (2.8 KB each), but lossless WebP stores them in 1.7 KB.
Which images to ship is the model administration's choice (ship.py); this module only stores and reads them.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .storage import atomic_write_bytes

FILENAME = "test_images.npz"
MOSAIC_COLUMNS = 50


def write_test_images(directory: Path, indices: np.ndarray, labels: np.ndarray, images: np.ndarray) -> None:
    """Store (N, 32, 32, 3) uint8 images with their test indices and labels, replacing what was there."""
    buf = io.BytesIO()
    np.savez(buf, indices=indices.astype(np.int32), labels=labels.astype(np.uint8),
             webp=np.frombuffer(_encode_mosaic(images), dtype=np.uint8))
    atomic_write_bytes(directory / FILENAME, buf.getvalue())


def read_test_images(directory: Path) -> dict[int, tuple[np.ndarray, int]] | None:
    """{test index: (32x32x3 uint8 image, label)} of the shipped test images, or None if there are none."""
    path = directory / FILENAME
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        indices, labels = z["indices"], z["labels"]
        # Files written before the WebP mosaic hold the raw pixels.
        images = z["images"] if "images" in z.files else _decode_mosaic(z["webp"], len(indices))
    return {int(i): (img, int(lab)) for i, img, lab in zip(indices, images, labels)}


def _encode_mosaic(images: np.ndarray) -> bytes:
    """(N, 32, 32, 3) uint8 -> lossless WebP of a MOSAIC_COLUMNS-wide grid of tiles, row-major, zero-padded."""
    from PIL import Image  # torchvision cannot encode WebP; Pillow is one of torchvision's own requirements

    rows = -(-len(images) // MOSAIC_COLUMNS)
    tiles = np.zeros((rows * MOSAIC_COLUMNS, *images.shape[1:]), np.uint8)
    tiles[: len(images)] = images
    grid = tiles.reshape(rows, MOSAIC_COLUMNS, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, -1, 3)
    out = io.BytesIO()
    Image.fromarray(grid).save(out, "WEBP", lossless=True, quality=100, method=4)
    return out.getvalue()


def _decode_mosaic(data: np.ndarray, n: int) -> np.ndarray:
    from PIL import Image  # already loaded by the app, unlike torchvision.io (seconds to import on 2 cores)

    grid = np.asarray(Image.open(io.BytesIO(data.tobytes())).convert("RGB"))
    rows, cols = grid.shape[0] // 32, grid.shape[1] // 32  # the mosaic's own shape, whatever wrote it
    tiles = grid.reshape(rows, 32, cols, 32, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 32, 32, 3)
    return tiles[:n]
