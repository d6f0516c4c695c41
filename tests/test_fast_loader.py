"""The loader's sync-free batches equal, bit for bit, those of the loader they replaced (same seed, epoch, batch).

The reference below is the previous DeviceLoader.epoch, kept verbatim: it drew an epoch's permutation, offsets and
flips on the host, then copied each batch's indices to the device. The new one copies the draws once an epoch
and gathers each batch in one indexing op; a resumed run must still see exactly the old batches.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resnet_demo.data.cifar import Split
from resnet_demo.data.loader import PAD, DeviceLoader, normalize


def _reference_epoch(split: Split, batch_size: int, train: bool, seed: int, epoch: int, rank: int, world: int,
                     channels_last: bool):
    images = torch.from_numpy(np.ascontiguousarray(split.images)).permute(0, 3, 1, 2)
    if train:
        images = torch.nn.functional.pad(images, (PAD, PAD, PAD, PAD))
    images = images.contiguous()
    labels = torch.from_numpy(split.labels)
    n = len(split)
    shard = (lambda idx: idx[rank::world]) if world > 1 else (lambda idx: idx)
    finish = (lambda x: normalize(x).contiguous(memory_format=torch.channels_last)) if channels_last else normalize
    if not train:
        idx = shard(torch.arange(n))
        for i in range(0, len(idx), batch_size):
            j = idx[i:i + batch_size]
            yield finish(images[j]), labels[j]
        return
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    offsets = torch.randint(0, 2 * PAD + 1, (n, 2), generator=g)
    flips = torch.rand(n, generator=g) < 0.5
    steps = max(1, n // (batch_size * world))
    perm = shard(perm[: steps * batch_size * world])
    ar = torch.arange(32)
    for b in range(steps):
        j = perm[b * batch_size:(b + 1) * batch_size]
        dy, dx, flip = offsets[j, 0], offsets[j, 1], flips[j]
        rows = dy[:, None] + ar
        cols = torch.where(flip[:, None], dx[:, None] + 31 - ar, dx[:, None] + ar)
        src = images[j]
        batch = src[torch.arange(len(j))[:, None, None, None], torch.arange(3)[None, :, None, None],
                    rows[:, None, :, None], cols[:, None, None, :]]
        yield finish(batch), labels[j]


@pytest.fixture(scope="module")
def split() -> Split:
    rng = np.random.default_rng(7)
    return Split(rng.integers(0, 256, (150, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 150).astype(np.int64))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2)])
def test_batches_equal_the_previous_loaders_bit_for_bit(split, train, channels_last, rank, world):
    for epoch in (0, 3):
        new = list(DeviceLoader(split, 32, train=train, seed=11, rank=rank, world_size=world,
                                channels_last=channels_last).epoch(epoch))
        old = list(_reference_epoch(split, 32, train, 11, epoch, rank, world, channels_last))
        assert len(new) == len(old) > 0
        for (x, y), (xr, yr) in zip(new, old):
            assert x.dtype == torch.float32 and x.shape == xr.shape
            assert torch.equal(x, xr) and torch.equal(y, yr)
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            assert x.is_contiguous(memory_format=fmt)


def test_a_resumed_epoch_starts_at_the_same_batch(split):
    loader = DeviceLoader(split, 16, train=True, seed=4, channels_last=True)
    whole = list(loader.epoch(2))
    tail = list(loader.epoch(2, start_batch=5))
    assert len(tail) == len(whole) - 5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(whole[5:], tail))
