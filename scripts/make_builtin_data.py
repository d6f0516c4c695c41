"""Rebuild weights/cifar10-builtin.npz (the built-in training subset) from the full CIFAR-10, or check it.

    python scripts/make_builtin_data.py --data-dir DIR            # write the file
    python scripts/make_builtin_data.py --data-dir DIR --check    # compare the shipped file with a rebuild

DIR holds train.npz/test.npz or torchvision's cifar-10-batches-py (`python -m resnet_demo download` fetches it).
--check compares indices, labels and pixel hashes, not the WebP bytes (another libwebp may encode differently).
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resnet_demo.base.storage import atomic_write_bytes  # noqa: E402
from resnet_demo.data import builtin as builtin_data  # noqa: E402
from resnet_demo.data.cifar import load_cifar10  # noqa: E402
from resnet_demo.store.ship import BUDGET_BYTES, size_bytes  # noqa: E402

KEYS = [f"{split}_{what}" for split in builtin_data.SPLITS for what in ("indices", "labels", "sha256")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="the full CIFAR-10")
    p.add_argument("--check", action="store_true", help="only compare the shipped file with a rebuild")
    args = p.parse_args()
    full = load_cifar10(args.data_dir)
    if (len(full.train), len(full.test)) != (50_000, 10_000):
        raise SystemExit(f"{args.data_dir} holds {len(full.train):,}/{len(full.test):,} images, not the genuine "
                         f"50,000/10,000")
    data = builtin_data.build(full)
    path = builtin_data.builtin_path()
    if args.check:
        with np.load(io.BytesIO(data)) as new, np.load(path) as old:
            differ = [k for k in KEYS if not np.array_equal(new[k], old[k])]
        builtin_data.load(path)  # decodes, and checks the pixels against the recorded hashes
        print(f"{path}: " + (f"differs from a rebuild in {', '.join(differ)}" if differ else "matches a rebuild"))
        return 1 if differ else 0
    atomic_write_bytes(path, data)
    built = builtin_data.load(path)
    print(f"wrote {path}: {len(built.train):,} training + {len(built.test):,} test images, {len(data) / 1e6:.2f} MB; "
          f"weights/ now holds {size_bytes() / 1e6:.2f} MB of its {BUDGET_BYTES / 1e6:.0f} MB budget")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
