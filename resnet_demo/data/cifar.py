"""The full CIFAR-10 from disk (or downloaded), and a loader that augments whole batches on the device.

Folders, searched in order: an explicit directory, $RESNET_DEMO_DATA, ./data. Each may hold a
`train.npz`/`test.npz` pair (uint8 HWC `images` + `labels`, as save_npz_pair writes) or torchvision's
`cifar-10-batches-py` folder. If none has it, download.py fetches it into the first of them (unless offline).
Without it, some runs train on the built-in subset instead (sources.py).
"""
from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .paper import CLASSES, MEAN, STD

ENV_DATA = "RESNET_DEMO_DATA"
ENV_OFFLINE = "RESNET_DEMO_OFFLINE"  # "1": never try to download (tests, air-gapped classrooms)
PAD = 4  # the paper's 4-pixel padding before the random 32x32 crop


def eval_batch_size(device: torch.device | str) -> int:
    """Images a forward pass takes at a time when no gradient is kept: 2500 on CUDA, 250 on the CPU.

    On a GPU a larger batch means fewer launches of the same small kernels (a test-set pass in 4 batches, not 10).
    On the CPU a 1000-image batch's activations (65 MB a layer in the first stage) are handed back to the
    kernel as soon as they are freed and faulted in afresh by the next layer: a bare ResNet-110 forward pass ran
    at 65 images/s against 120 at 250 (benchmarks/eval_faults.py; BENCHMARKS.md, Evaluation on the CPU).
    """
    return 2500 if torch.device(device).type == "cuda" else 250


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").lower() in ("1", "true", "yes")


class DataError(RuntimeError):
    """The data could not be found or read; the message says where we looked and what to do."""


@dataclass
class Split:
    images: np.ndarray  # (N, 32, 32, 3) uint8, RGB
    labels: np.ndarray  # (N,) int64

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.shape[1:] != (32, 32, 3) or self.images.dtype != np.uint8:
            raise DataError(f"expected images of shape (N, 32, 32, 3) uint8, got {self.images.shape} {self.images.dtype}")
        if len(self.labels) != len(self.images):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.labels = self.labels.astype(np.int64)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(CLASSES)):
            raise DataError("labels must lie in 0..9")

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


def _read_torchvision(root: Path, download: bool = False) -> Cifar10:
    from torchvision.datasets import CIFAR10  # pickled batches; torchvision checks their MD5 before reading

    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
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


def load_cifar10(data_dir: str | os.PathLike | None = None, download: bool | None = None) -> Cifar10:
    """The full set; when it is nowhere to be found, downloaded into the first candidate folder (unless offline)."""
    if download is None:
        download = not offline()
    d = find_cifar10(data_dir)
    if d is not None:
        if (d / "train.npz").is_file():
            return Cifar10(_read_npz(d / "train.npz"), _read_npz(d / "test.npz"), source=str(d))
        return _read_torchvision(d.parent if d.name == "cifar-10-batches-py" else d)
    if not download:
        raise DataError(how_to_get(data_dir))
    from .download import download_cifar10, progress_lines

    root = candidate_dirs(data_dir)[0]
    print(f"The full CIFAR-10 was not found; downloading it into {root} ...", file=sys.stderr, flush=True)
    try:
        return _read_torchvision(download_cifar10(root, progress_lines()).parent)
    except DataError as e:
        raise DataError(f"{how_to_get(data_dir)} The download failed: {e}") from None


def stratified_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of n items with the classes as balanced as the labels allow, random within each class;
    deterministic in seed."""
    if n <= 0:
        raise ValueError("subset size must be positive")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(len(CLASSES))]
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
    return Split(split.images[chosen], split.labels[chosen])


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


def normalize(x_uint8_nchw: torch.Tensor, dtype: torch.dtype = torch.float32,
              stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 NCHW in 0..255 -> the network's input: per-channel (x/255 - MEAN) / STD.

    `stats`: (mean, std) already on the device, so a loader does not copy them there every batch (on a GPU that
    copy waits for the queued work)."""
    mean, std = stats or channel_stats(x_uint8_nchw.device)
    return ((x_uint8_nchw.float() / 255.0 - mean) / std).to(dtype)


def channel_stats(device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """MEAN and STD as (1, 3, 1, 1) float32 tensors on `device`."""
    return (torch.tensor(MEAN, device=device, dtype=torch.float32).view(1, 3, 1, 1),
            torch.tensor(STD, device=device, dtype=torch.float32).view(1, 3, 1, 1))


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """The inverse of normalize, to 0..1 floats (for showing what the network saw)."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


class DeviceLoader:
    """The whole split as one uint8 tensor on the device; crop, flip and normalise a batch at a time there.

    Every random choice of an epoch comes from a generator seeded with (seed, epoch), so batch k of epoch e
    is the same whenever it is drawn: a resumed run sees exactly the batches an unbroken one would have.
    Under DDP each rank takes every world-th image of the same permutation.

    The images are kept channels-last (N, H, W, C), as they come, and an epoch's draws go to the device once: a
    batch is then one gather straight into the network's memory format plus the normalisation, a handful of
    kernels and no copy from the host, which on a GPU would wait for all the queued work every batch.
    """

    def __init__(self, split: Split, batch_size: int, device: torch.device | str = "cpu", train: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, channels_last: bool = False):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.channels_last = channels_last
        images = torch.from_numpy(np.ascontiguousarray(split.images))  # NHWC uint8
        if train:  # pad once; a crop is then a window into the padded image
            images = torch.nn.functional.pad(images, (0, 0, PAD, PAD, PAD, PAD))
        self.images = images.to(self.device)
        self.labels = torch.from_numpy(split.labels).to(self.device)
        self.stats = channel_stats(self.device)
        self.n = len(split)

    def __len__(self) -> int:
        if self.train:  # drop the ragged last batch, as the paper's iteration counts assume
            return max(1, self.n // (self.batch_size * self.world_size))
        return -(-len(range(self.rank, self.n, self.world_size)) // self.batch_size)

    def _shard(self, idx: torch.Tensor) -> torch.Tensor:
        return idx[self.rank::self.world_size] if self.world_size > 1 else idx

    def epoch(self, epoch: int = 0, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.train:
            images, labels = self._shard(self.images), self._shard(self.labels)  # views: no copy
            for i in range(start_batch * self.batch_size, len(labels), self.batch_size):
                yield self._finish(images[i:i + self.batch_size].permute(0, 3, 1, 2)), labels[i:i + self.batch_size]
            return
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        offsets = torch.randint(0, 2 * PAD + 1, (self.n, 2), generator=g)
        flips = torch.rand(self.n, generator=g) < 0.5
        steps = len(self)
        perm = self._shard(perm[: steps * self.batch_size * self.world_size]).to(self.device)
        offsets, flips = offsets.to(self.device), flips.to(self.device)
        ar = torch.arange(32, device=self.device)
        for b in range(start_batch, steps):
            j = perm[b * self.batch_size:(b + 1) * self.batch_size]
            dy, dx, flip = offsets[j, 0], offsets[j, 1], flips[j]
            rows = dy[:, None] + ar
            cols = torch.where(flip[:, None], dx[:, None] + 31 - ar, dx[:, None] + ar)
            batch = self.images[j[:, None, None], rows[:, :, None], cols[:, None, :]]  # (B, 32, 32, 3)
            yield self._finish(batch.permute(0, 3, 1, 2)), self.labels[j]

    def _finish(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW (a channels-last view) -> normalised float in the memory format the model wants."""
        x = normalize(batch_uint8, stats=self.stats)
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
