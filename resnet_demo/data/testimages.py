"""The test images shipped beside the weights, so the app can show them without the data set.

weights/test_images.npz holds their test-set indices and labels, and the images as one lossless WebP mosaic
(mosaic.py).
Which images to ship is the model administration's choice (ship.py); this module only stores and reads them.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from resnet_demo.data.mosaic import decode_mosaic, encode_mosaic
from resnet_demo.base.storage import atomic_write_bytes

FILENAME = "test_images.npz"


def write_test_images(directory: Path, indices: np.ndarray, labels: np.ndarray, images: np.ndarray) -> None:
    """Store (N, 32, 32, 3) uint8 images with their test indices and labels, replacing what was there."""
    buf = io.BytesIO()
    np.savez(buf, indices=indices.astype(np.int32), labels=labels.astype(np.uint8),
             webp=np.frombuffer(encode_mosaic(images), dtype=np.uint8))
    atomic_write_bytes(directory / FILENAME, buf.getvalue())


def read_test_images(directory: Path) -> dict[int, tuple[np.ndarray, int]] | None:
    """{test index: (32x32x3 uint8 image, label)} of the shipped test images, or None if there are none."""
    path = directory / FILENAME
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        indices, labels = z["indices"], z["labels"]
        # Files written before the WebP mosaic hold the raw pixels.
        images = z["images"] if "images" in z.files else decode_mosaic(z["webp"], len(indices))
    return {int(i): (img, int(lab)) for i, img, lab in zip(indices, images, labels)}
