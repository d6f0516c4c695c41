"""The built-in CIFAR-10 subset that weights/ ships, so that training works with no data set and no internet.

It holds 5,000 training images (500 a class) and 1,000 test images (100 a class), each a stratified random choice
from the genuine split (data.stratified_subset, seed 0), stored losslessly as WebP mosaics (mosaic.py) with the
indices they were taken from and a sha256 of their pixels. `scripts/make_builtin_data.py` rebuilds the file from
the full set and checks it; docs/DATA.md says what it holds.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from resnet_demo.base.storage import SHIPPED_WEIGHTS
from resnet_demo.data.cifar import Cifar10, DataError, Split, stratified_indices
from resnet_demo.data.mosaic import decode_mosaic, encode_mosaic

FILENAME = "cifar10-builtin.npz"
TRAIN_IMAGES = 5_000
TEST_IMAGES = 1_000
SEED = 0
SOURCE = "built-in subset"  # Cifar10.source of the built-in set, as runs record it
SPLITS = ("train", "test")


def builtin_path() -> Path:
    """Beside the shipped models, found from the package (not $RESNET_DEMO_WEIGHTS, which points at models)."""
    return SHIPPED_WEIGHTS / FILENAME


def pixels_sha256(images: np.ndarray) -> str:
    """sha256 of the (N, 32, 32, 3) uint8 pixels, C order: what the file records to prove it decodes unchanged."""
    return hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).hexdigest()


def build(full: Cifar10, n_train: int = TRAIN_IMAGES, n_test: int = TEST_IMAGES, seed: int = SEED) -> bytes:
    """The built-in file's bytes, chosen from the full set: stratified and random within each class."""
    arrays: dict[str, np.ndarray] = {}
    provenance = {
        "what": "a stratified random subset of CIFAR-10 (Krizhevsky 2009), for training without the full set",
        "chosen_by": f"resnet_demo.data.cifar.stratified_indices(labels, n, seed={seed}) on each genuine split",
        "made_with": "python scripts/make_builtin_data.py --data-dir DIR",
        "pixels": "lossless WebP mosaic, 50 images a row; *_sha256 is the sha256 of the decoded (N, 32, 32, 3) "
                  "uint8 array, *_indices the images' positions in the genuine split (train: data_batch_1..5 in "
                  "order, 0..49999; test: test_batch, 0..9999)",
    }
    for name, split, n in (("train", full.train, n_train), ("test", full.test, n_test)):
        indices = stratified_indices(split.labels, n, seed)
        images, labels = split.images[indices], split.labels[indices]
        arrays[f"{name}_webp"] = np.frombuffer(encode_mosaic(images), dtype=np.uint8)
        arrays[f"{name}_labels"] = labels.astype(np.uint8)
        arrays[f"{name}_indices"] = indices.astype(np.int32)
        arrays[f"{name}_sha256"] = np.array(pixels_sha256(images))
        provenance[name] = {"images": int(n), "per_class": np.bincount(labels, minlength=10).tolist(),
                            "of": len(split), "source_pixels_sha256": pixels_sha256(split.images)}
    arrays["provenance"] = np.array(json.dumps(provenance, indent=1))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def info(path: Path | None = None) -> dict | None:
    """{train_images, test_images, provenance} without decoding the images, or None if the file is absent."""
    path = path or builtin_path()
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {"train_images": len(z["train_labels"]), "test_images": len(z["test_labels"]),
                    "provenance": json.loads(str(z["provenance"]))}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"the built-in data set {path} is unreadable ({e}); restore it with "
                        f"`git checkout -- weights/{FILENAME}`") from e


def load(path: Path | None = None) -> Cifar10:
    """Decode both splits and check every pixel against the recorded sha256."""
    path = path or builtin_path()
    if not path.is_file():
        raise DataError(f"the built-in data set {path} is missing; restore it with `git checkout -- weights/{FILENAME}`")
    splits = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for name in SPLITS:
                labels = z[f"{name}_labels"].astype(np.int64)
                images = decode_mosaic(z[f"{name}_webp"], len(labels))
                if pixels_sha256(images) != str(z[f"{name}_sha256"]):
                    raise ValueError(f"its {name} images do not match their recorded sha256")
                splits[name] = Split(images, labels)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"the built-in data set {path} is damaged ({e}); restore it with "
                        f"`git checkout -- weights/{FILENAME}`") from e
    return Cifar10(splits["train"], splits["test"], source=SOURCE)
