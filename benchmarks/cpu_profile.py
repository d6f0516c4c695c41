"""Where a CPU training step's time goes: the tutorial data pipeline alone vs the network step alone.

Run: python -m benchmarks.cpu_profile [DATA_DIR]  (default .cache/cifar10). It explains why no data pipeline can
make CPU training 2x faster than the baseline of benchmarks/training.py: the network step is the bottleneck, and
only a faster step (bf16 autocast, channels_last) moves it.
"""
from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from resnet_demo.data.cifar import load_cifar10
from resnet_demo.nets.model import build_model

from .training import TutorialDataset

PIPELINE_IMAGES = 2560
STEPS = {20: 20, 56: 8}  # timed steps per depth main() prints (other depths: 8), after 3 warm-up steps


def pipeline_rate(data_dir: str) -> float:
    """Images/s of the tutorial's per-image PIL transforms in one process (no model, no DataLoader)."""
    train = load_cifar10(data_dir).train
    ds = TutorialDataset(train.images, train.labels)
    t = time.perf_counter()
    for i in range(PIPELINE_IMAGES):
        ds[i]
    return PIPELINE_IMAGES / (time.perf_counter() - t)


def step_rate(depth: int, batch: int = 128, bf16: bool = False, channels_last: bool = False) -> float:
    """Images/s of forward + backward + SGD on one fixed batch: the ceiling for any data pipeline."""
    torch.manual_seed(0)
    model = build_model(depth).train()
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step() -> None:
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t = time.perf_counter()
    steps = STEPS.get(depth, 8)
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    rate = pipeline_rate(sys.argv[1] if len(sys.argv) > 1 else ".cache/cifar10")
    print(f"tutorial PIL transforms alone, 1 process: {rate:.0f} img/s ({1e3 / rate:.3f} ms/img)")
    for depth in STEPS:
        for bf16, cl in ((False, False), (False, True), (True, False), (True, True)):
            how = f"{'bf16 autocast' if bf16 else 'fp32'}, {'channels_last' if cl else 'NCHW'}"
            print(f"ResNet-{depth} network step alone, batch 128, {torch.get_num_threads()} threads, {how}: "
                  f"{step_rate(depth, bf16=bf16, channels_last=cl):.0f} img/s")


if __name__ == "__main__":
    main()
