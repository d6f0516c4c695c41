"""The full CIFAR-10 on disk: where it is looked for, how it is read, and balanced subsets of it.

Folders, searched in order: an explicit directory, $RESNET_DEMO_DATA, ./data. Each may hold a
`train.npz`/`test.npz` pair (uint8 HWC `images` + `labels`, as save_npz_pair writes) or torchvision's
`cifar-10-batches-py` folder. If none has it, download.py can fetch it into the first of them.
Without it, some runs train on the built-in subset instead (sources.py).
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnet_demo.nets.paper import CLASSES

ENV_DATA = "RESNET_DEMO_DATA"
ENV_OFFLINE = "RESNET_DEMO_OFFLINE"  # "1": never try to download (tests, air-gapped classrooms)


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").lower() in ("1", "true", "yes")


class DataError(RuntimeError):
    """The data could not be found or read; the message says where we looked and what to do."""


@dataclass
class Split:
    """Labelled 32x32 images; `classes` names the labels (CIFAR-10's ten, or the classes a network is taught)."""

    images: np.ndarray  # (N, 32, 32, 3) uint8, RGB
    labels: np.ndarray  # (N,) int64, indices into classes
    classes: tuple[str, ...] = CLASSES

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.shape[1:] != (32, 32, 3) or self.images.dtype != np.uint8:
            raise DataError(f"expected images of shape (N, 32, 32, 3) uint8, got {self.images.shape} "
                            f"{self.images.dtype}")
        if len(self.labels) != len(self.images):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.labels = np.asarray(self.labels).astype(np.int64)
        self.classes = tuple(self.classes)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(f"labels must lie in 0..{len(self.classes) - 1} (one per class)")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Cifar10:
    train: Split
    test: Split
    source: str  # where it came from, for logs and manifests


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    found = [Path(data_dir)] if data_dir else []
    if os.environ.get(ENV_DATA):
        found.append(Path(os.environ[ENV_DATA]))
    found.append(Path("data"))
    unique: list[Path] = []
    for p in found:
        if p not in unique:
            unique.append(p)
    return unique


def _read_npz(path: Path) -> Split:
    try:
        with np.load(path, allow_pickle=False) as z:
            return Split(z["images"], z["labels"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable CIFAR-10 npz (needs 'images' and 'labels'): {e}") from e


def read_torchvision(root: Path) -> Cifar10:
    from torchvision.datasets import CIFAR10  # pickled batches; torchvision checks their MD5 before reading

    try:
        train = CIFAR10(str(root), train=True)
        test = CIFAR10(str(root), train=False)
    except RuntimeError as e:  # "Dataset not found or corrupted."
        raise DataError(f"{root / 'cifar-10-batches-py'}: {e}") from e
    return Cifar10(
        Split(np.asarray(train.data, dtype=np.uint8), np.asarray(train.targets)),
        Split(np.asarray(test.data, dtype=np.uint8), np.asarray(test.targets)),
        source=str(root / "cifar-10-batches-py"),
    )


def find_cifar10(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first candidate directory that holds either format, or None."""
    for d in candidate_dirs(data_dir):
        if (d / "train.npz").is_file() and (d / "test.npz").is_file():
            return d
        if (d / "cifar-10-batches-py" / "data_batch_1").is_file():
            return d
        if d.name == "cifar-10-batches-py" and (d / "data_batch_1").is_file():
            return d
    return None


def how_to_get(data_dir: str | os.PathLike | None = None) -> str:
    """Where we looked for the full set, and how a person gets it there."""
    dirs = candidate_dirs(data_dir)
    return (f"The full CIFAR-10 was not found (looked in: {', '.join(map(str, dirs))}). Get it with "
            f"`python -m resnet_demo download` (170 MB, into {dirs[0]}), or copy torchvision's cifar-10-batches-py "
            f"folder into {dirs[0]}, or set {ENV_DATA} to a folder that holds it.")


def load_cifar10(data_dir: str | os.PathLike | None = None) -> Cifar10:
    """The full set from the first candidate folder that holds it; a DataError saying how to get it otherwise
    (download.load_or_download fetches it instead)."""
    d = find_cifar10(data_dir)
    if d is None:
        raise DataError(how_to_get(data_dir))
    if (d / "train.npz").is_file():
        return Cifar10(_read_npz(d / "train.npz"), _read_npz(d / "test.npz"), source=str(d))
    return read_torchvision(d.parent if d.name == "cifar-10-batches-py" else d)


def stratified_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of n items with the classes as balanced as the labels allow, random within each class;
    deterministic in seed."""
    if n <= 0:
        raise ValueError("subset size must be positive")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    take: list[int] = []
    depth = 0
    while len(take) < min(n, len(labels)):  # round-robin over classes, so every class gets n // 10 (+1)
        for idx in per_class:
            if depth < len(idx) and len(take) < n:
                take.append(int(idx[depth]))
        depth += 1
    return np.sort(np.asarray(take, dtype=np.int64))


def stratified_subset(split: Split, n: int, seed: int = 0) -> Split:
    """n images with the classes as balanced as the split allows; deterministic in seed."""
    if n >= len(split):
        return split
    chosen = stratified_indices(split.labels, n, seed)
    return Split(split.images[chosen], split.labels[chosen], split.classes)


def select_classes(split: Split, names: tuple[str, ...] | list[str]) -> Split:
    """The images of the named classes only, relabelled in the order of `names` (a network taught, say, five of
    CIFAR-10's classes is tested on those classes' test images). DataError for a name the split does not have."""
    missing = [n for n in names if n not in split.classes]
    if missing:
        raise DataError(f"no images of class {missing[0]!r} here; the classes are {', '.join(split.classes)}")
    mapping = np.full(len(split.classes), -1, np.int64)
    for new, name in enumerate(names):
        mapping[split.classes.index(name)] = new
    relabelled = mapping[split.labels]
    keep = relabelled >= 0
    return Split(split.images[keep], relabelled[keep], tuple(names))


def synthetic_cifar10(n_train: int = 512, n_test: int = 256, seed: int = 0) -> Cifar10:
    """Learnable stand-in data (each class a colour and a stripe direction, plus noise) for tests."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> Split:
        labels = np.arange(n) % len(CLASSES)
        rng.shuffle(labels)
        yy, xx = np.mgrid[0:32, 0:32]
        images = np.empty((n, 32, 32, 3), np.float32)
        for c in range(len(CLASSES)):
            colour = np.array([(c * 37) % 256, (c * 91) % 256, (c * 53) % 256], np.float32)
            stripes = ((xx * (c % 3) + yy * (c // 3 % 3) + 1) // 4 % 2).astype(np.float32)[..., None]
            images[labels == c] = colour * 0.6 + 100 * stripes
        images += rng.normal(0, 20, images.shape)
        return Split(np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64))

    return Cifar10(make(n_train), make(n_test), source=f"synthetic(seed={seed})")


def save_npz_pair(data: Cifar10, out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", data.train), ("test", data.test)):
        np.savez(out / f"{name}.npz", images=split.images, labels=split.labels)
    return out
