"""The trainer's peak CPU memory against resnet_demo.training.budget's estimate: the calibration of the training guard.

    python -m benchmarks.memory --data-dir /path/to/cifar10          # the table in BENCHMARKS.md
    python -m benchmarks.memory --quick                               # two small runs: checks the script

Each row is a real `python -m resnet_demo train` process on the CPU (the real CIFAR-10 when found, else a stand-in
of its size), stopped through its STOP file once it has taken a few steps (the allocation pattern repeats from the
second step on; the stop also writes a checkpoint, which the estimate covers). Its peak resident memory is the
kernel's figure for the process (ru_maxrss from wait4), so nothing is sampled and nothing is missed. The fit
prints the framework constant and the activation factor of each precision that resnet_demo.training.budget uses.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, Workspace, machine

# (depth, batch, training images): three depths at two batches on the Train page's CPU default of 5,000 images,
# a small batch (the framework's share), and the whole training set (the data's share).
RUNS = [(20, 128, 5000), (56, 128, 5000), (110, 128, 5000), (20, 512, 5000), (56, 512, 5000), (110, 512, 5000),
        (20, 32, 5000), (20, 128, 50000)]
QUICK_RUNS = [(8, 32, 640), (8, 64, 640)]
TEST_IMAGES = 2000


def peak_rss(data_dir: Path, depth: int, batch: int, images: int, precision: str, steps: int,
             timeout: float = 900) -> dict:
    """Train until `steps` steps are done, stop, and return the process's peak resident memory."""
    from resnet_demo.store.events import read_events

    with tempfile.TemporaryDirectory(prefix="resnet-demo-memory-") as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "resnet_demo", "train", "--depth", str(depth), "--batch-size", str(batch),
               "--subset", str(images), "--test-subset", str(TEST_IMAGES), "--epochs", "100", "--device", "cpu",
               "--precision", precision, "--data-dir", str(data_dir), "--no-download", "--out", str(out),
               "--quiet", "--ignore-memory-limit"]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline, done = time.time() + timeout, 0
        while proc.poll() is None and time.time() < deadline:
            steps_seen = [e["step"] for e in read_events(out / "events.jsonl") if e.get("type") == "step"]
            done = max(steps_seen, default=0)
            if done >= steps:
                (out / "STOP").write_text("measured\n")
                break
            time.sleep(0.2)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if done < steps:
            raise RuntimeError(f"depth {depth} batch {batch}: no step {steps} (exit {proc.returncode}): "
                               f"{proc.stderr.read().decode(errors='replace')[-800:]}")
        proc.stderr.close()
    return {"depth": depth, "batch": batch, "images": images, "test_images": TEST_IMAGES, "precision": precision,
            "steps": done, "peak_bytes": usage.ru_maxrss * 1024}


def estimate_row(row: dict) -> float:
    from resnet_demo.training.budget import estimate
    from resnet_demo.training.config import TrainConfig

    cfg = TrainConfig(depth=row["depth"], batch_size=row["batch"], subset=row["images"],
                      test_subset=row["test_images"], device="cpu", precision=row["precision"])
    return estimate(cfg, "cpu").total


def fit(rows: list[dict]) -> dict:
    """Least squares for the framework constant (shared) and one activation factor per precision."""
    import numpy as np

    from resnet_demo.training import budget
    from resnet_demo.training.config import TrainConfig

    precisions = sorted({r["precision_used"] for r in rows})
    a, y = [], []
    for r in rows:
        cfg = TrainConfig(depth=r["depth"], batch_size=r["batch"], subset=r["images"],
                          test_subset=r["test_images"], device="cpu", precision=r["precision"])
        need = budget.estimate(cfg, "cpu")
        saved, _ = budget.network_counts(r["depth"])
        known = need.data + need.model + r["batch"] * budget.INPUT_BYTES
        a.append([1.0] + [r["batch"] * saved * (p == r["precision_used"]) for p in precisions])
        y.append(r["peak_bytes"] - known)
    coef, *_ = np.linalg.lstsq(np.array(a), np.array(y), rcond=None)
    return {"framework_gb": coef[0] / budget.GB, **{f"factor {p}": c for p, c in zip(precisions, coef[1:])}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="the real CIFAR-10 (train.npz/test.npz); default: the usual search")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated (default fp32,bf16)")
    p.add_argument("--steps", type=int, default=3, help="steps before the stop (default 3)")
    p.add_argument("--quick", action="store_true", help="two tiny runs: checks the script, not the figures")
    p.add_argument("--json", metavar="OUT", help="also write the rows and the machine to this JSON file")
    args = p.parse_args(argv)
    from resnet_demo.base.device import precision_label, resolve_precision

    ws = Workspace(args.data_dir)
    try:
        data_dir, note = ws.data_dir()
        rows = []
        print(f"data: {note}; CPU: {machine()['cpu']}, {os.cpu_count()} cores")
        print(f"{'depth':>5} {'batch':>5} {'images':>6} {'precision':>13} {'peak MB':>8} {'estimate MB':>11} "
              f"{'est/peak':>8}")
        for precision in args.precisions.split(","):
            for depth, batch, images in QUICK_RUNS if args.quick else RUNS:
                row = peak_rss(data_dir, depth, batch, images, precision, args.steps)
                row["precision_used"] = precision_label(resolve_precision(precision, __import__("torch").device("cpu")))
                row["estimate_bytes"] = estimate_row(row)
                rows.append(row)
                print(f"{depth:>5} {batch:>5} {images:>6} {row['precision_used']:>13} {row['peak_bytes'] / 1e6:>8.0f} "
                      f"{row['estimate_bytes'] / 1e6:>11.0f} {row['estimate_bytes'] / row['peak_bytes']:>8.2f}",
                      flush=True)
        fitted = fit(rows)
        print("fit: " + ", ".join(f"{k} {v:.3f}" for k, v in fitted.items()))
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "data": note, "rows": rows, "fit": fitted},
                                                  indent=1))
    finally:
        ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
