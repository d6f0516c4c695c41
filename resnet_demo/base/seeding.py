"""Random weights that a seed fixes, even with other threads at work.

PyTorch's layer initialisers draw from one global generator that every thread of the process shares. The app
server fine-tunes in threads (server/teach_queue.py), two at once by default, and `torch.random.fork_rng`, which
a fine-tune used to seed its new weights, restores the global state when it ends: one thread's restore could land
between another's `manual_seed` and its draws, and the same seed then gave other weights. Every seeded
construction goes through `seeded`, one at a time, so its draws are exactly those of its seed, and a network built
anywhere else (to be loaded with saved weights) draws under `drawing`, never in the middle of such a block.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_LOCK = threading.RLock()


@contextmanager
def drawing() -> Iterator[None]:
    """Hold the seeding lock while drawing from the global generator without a seed of one's own (a network built
    only to be loaded with saved weights): such draws then never fall inside another thread's `seeded` block."""
    with _LOCK:
        yield


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw from torch's global CPU generator as seeded with `seed`, with no other `seeded` block in between; the
    generator's state from before is restored afterwards. Keep the block to the draws (no file reading in it):
    other threads wait for it."""
    with _LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
