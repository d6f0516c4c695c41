"""Why the CPU evaluates 250 images a batch: page faults and system time of ResNet-110's forward pass by batch.

Run: python -m benchmarks.eval_faults, then again with glibc told to keep freed memory:
MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 python -m benchmarks.eval_faults
If the faults and the system time vanish in the second run, the allocator (not the convolutions) is the cost.
Random weights and inputs: speed does not depend on their values.
"""
from __future__ import annotations

import resource
import time

import torch

from resnet_demo.nets.model import build_model

IMAGES = 2000


def main() -> None:
    torch.manual_seed(0)
    model = build_model(110).eval()
    x = torch.rand(IMAGES, 3, 32, 32)
    print(f"ResNet-110 forward passes on {IMAGES:,} images, {torch.get_num_threads()} threads")
    for batch in (1000, 250):
        with torch.inference_mode():
            model(x[:batch])  # warm-up
            before = resource.getrusage(resource.RUSAGE_SELF)
            t = time.perf_counter()
            for i in range(0, IMAGES, batch):
                model(x[i:i + batch])
            seconds = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_SELF)
        print(f"batch {batch:4d}: {IMAGES / seconds:5.0f} img/s, "
              f"system time {after.ru_stime - before.ru_stime:5.1f} s, "
              f"minor page faults {after.ru_minflt - before.ru_minflt:,}")


if __name__ == "__main__":
    main()
