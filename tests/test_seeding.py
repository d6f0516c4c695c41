"""A seed fixes the random weights even while other threads build networks and seed their own (the app server
fine-tunes in threads; a test process may have one running beside a training)."""
from __future__ import annotations

import threading

import torch

from resnet_demo.base.seeding import seeded
from resnet_demo.nets.model import Arch, CifarResNet


def _weights(seed: int) -> list[torch.Tensor]:
    with seeded(seed):
        return [p.detach().clone() for p in CifarResNet(Arch(depth=8)).parameters()]


def test_a_seed_gives_the_same_weights_while_other_threads_draw():
    reference = _weights(0)
    stop = threading.Event()

    def neighbour(seed: int) -> None:
        while not stop.is_set():
            CifarResNet(Arch(depth=8))  # a network built to be loaded: unseeded draws
            with seeded(seed):  # a fine-tune's own seed, and its restore of the global state
                torch.rand(1000)

    threads = [threading.Thread(target=neighbour, args=(s,), daemon=True) for s in (1, 2)]
    for t in threads:
        t.start()
    try:
        runs = [_weights(0) for _ in range(30)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert all(all(torch.equal(a, b) for a, b in zip(reference, run, strict=True)) for run in runs)


def test_seeded_leaves_the_global_generator_as_it_was():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    _weights(0)
    assert torch.equal(torch.rand(3), expected)
