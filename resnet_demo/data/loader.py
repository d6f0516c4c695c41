"""A split as network inputs: the normalisation, and a loader that crops, flips and normalises whole batches on
the device (the training set) or serves the test set in order."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from resnet_demo.data.cifar import Split
from resnet_demo.nets.paper import MEAN, STD

PAD = 4  # the paper's 4-pixel padding before the random 32x32 crop


def eval_batch_size(device: torch.device | str) -> int:
    """Images a forward pass takes at a time when no gradient is kept: 2500 on CUDA, 250 on the CPU.

    On a GPU a larger batch means fewer launches of the same small kernels (a test-set pass in 4 batches, not 10).
    On the CPU a 1000-image batch's activations (65 MB a layer in the first stage) are handed back to the
    kernel as soon as they are freed and faulted in afresh by the next layer: a bare ResNet-110 forward pass ran
    at 65 images/s against 120 at 250 (benchmarks/eval_faults.py; BENCHMARKS.md, Evaluation on the CPU).
    """
    return 2500 if torch.device(device).type == "cuda" else 250


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
