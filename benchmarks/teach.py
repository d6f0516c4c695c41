"""Teaching new classes: is starting from a trained network worth it, and how long does a teach take?

    python -m benchmarks.teach --data-dir DIR [--seeds 0 1] [--out benchmarks/results-teach.json]

On the genuine CIFAR-10 (nothing is downloaded). A ResNet-20 is trained from scratch on five classes (BASE_CLASSES,
their 25,000 training images, --base-epochs passes; it is kept in --work and reused on a rerun), then taught the
other five (NEW_CLASSES) from n images per class drawn from their training images, once from that network and
once from random weights, with the same images, seed and settings (training/teach.py's defaults: 150 steps of 64).
Each taught network is tested on the 5,000 test images of the new classes. Then the time of a teach of 5 classes x
20 images and of the pair (the comparison) is read off those runs.

Teaches run one after another; every record says how many torch threads it used, its wall and CPU seconds and
the load average around it, since on a shared machine the wall time says as much about the neighbours.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine
from resnet_demo.base.storage import atomic_write_json
from resnet_demo.data.cifar import Split, load_cifar10, select_classes
from resnet_demo.store.evaluate import evaluate
from resnet_demo.store.weights import load_model, save_model
from resnet_demo.training.teach import SCRATCH, TeachConfig, teach

BASE_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
NEW_CLASSES = ("dog", "frog", "horse", "ship", "truck")
TARGET_TEACH_S, TARGET_PAIR_S = 15, 30


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def timed(fn):
    """(fn's result, wall seconds, CPU seconds of this process, load averages before and after)."""
    load0, wall0, cpu0 = os.getloadavg(), time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall0, time.process_time() - cpu0, [load0[0], os.getloadavg()[0]]


def base_model(train: Split, test: Split, path: Path, epochs: int, seed: int) -> tuple[torch.nn.Module, dict]:
    """The five-class ResNet-20 trained from scratch (reused from `path` when there)."""
    if path.is_file():
        model, _ = load_model(path)
        log(f"base network: reusing {path}")
        record = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").is_file() else {}
    else:
        steps = epochs * len(train) // 128
        log(f"base network: ResNet-20 from scratch on {len(train):,} images of {', '.join(BASE_CLASSES)}, "
            f"{epochs} epochs = {steps} steps of 128")
        cfg = TeachConfig(start=SCRATCH, steps=steps, batch_size=128, holdout=0, seed=seed, eval_every=0)
        result, wall, cpu, load = timed(lambda: teach(train, cfg, _every(200)))
        model = result.model
        record = {"epochs": epochs, "steps": steps, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                  "load": load, "threads": torch.get_num_threads(), "seed": seed}
        save_model(path, model, model.arch)
        atomic_write_json(path.with_suffix(".json"), record)
    record["test_accuracy"] = evaluate(model, test)["accuracy"]
    log(f"base network: {100 * record['test_accuracy']:.2f}% on the {len(test):,} test images of its classes")
    return model, record


def _every(n: int):
    def listener(e: dict) -> None:
        if e["type"] == "step" and e["step"] % n == 0:
            log(f"  step {e['step']}/{e['total_steps']} loss {e['loss']:.3f} ({e['elapsed_s']:.0f} s)")
    return listener


def few_per_class(split: Split, n: int, seed: int) -> Split:
    """n images of each class, drawn at random by the seed."""
    rng = np.random.default_rng(1000 + seed)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(split.labels == c), n, replace=False)
                                  for c in range(len(split.classes))]))
    return Split(split.images[idx], split.labels[idx], split.classes)


def one_teach(few: Split, test: Split, start: str, base, cfg: TeachConfig) -> dict:
    """Teach `few` from the base network or from scratch; the accuracy on `test` and the time it took."""
    cfg = TeachConfig(**{**cfg.to_dict(), "start": SCRATCH if start == "scratch" else "base"})
    result, wall, cpu, load = timed(lambda: teach(few, cfg, base=None if start == "scratch" else base))
    return {"start": start, "test_accuracy": evaluate(result.model, test)["accuracy"], "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "load": load, "threads": torch.get_num_threads(), "steps": cfg.steps,
            "batch_size": cfg.batch_size, "images": len(few), "precision": result.record["precision"]}


def transfer_rows(train: Split, test: Split, base, sizes: list[int], seeds: list[int], steps: list[int]) -> list:
    rows = []
    for n in sizes:
        for seed in seeds:
            few = few_per_class(train, n, seed)
            for s in steps:
                cfg = TeachConfig(steps=s, holdout=0, seed=seed, eval_every=0)
                for start in ("trained", "scratch"):
                    if s != steps[0] and (start == "scratch" or n != 20):
                        continue  # shorter teaches only of 20 a class from the trained network: are 150 needed?
                    row = {"per_class": n, "seed": seed, **one_teach(few, test, start, base, cfg)}
                    log(f"  {n:>3} per class, seed {seed}, {s} steps, from {start:<7}: "
                        f"{100 * row['test_accuracy']:.1f}%  ({row['wall_s']:.1f} s wall, {row['cpu_s']:.1f} s CPU, "
                        f"load {row['load'][0]:.1f})")
                    rows.append(row)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["per_class"], r["steps"], r["start"]) for r in rows})
    for n, steps, start in keys:
        acc = [r["test_accuracy"] for r in rows if (r["per_class"], r["steps"], r["start"]) == (n, steps, start)]
        out.append({"per_class": n, "steps": steps, "start": start, "runs": len(acc),
                    "mean": round(float(np.mean(acc)), 4), "min": min(acc), "max": max(acc)})
    return out


def timing(rows: list[dict]) -> dict:
    """The 5 x 20 teach and the pair, from the runs at the default length."""
    default = TeachConfig().steps
    pick = [r for r in rows if r["per_class"] == 20 and r["steps"] == default]
    trained = [r["wall_s"] for r in pick if r["start"] == "trained"]
    pairs = [a["wall_s"] + b["wall_s"] for a in pick if a["start"] == "trained"
             for b in pick if b["start"] == "scratch" and b["seed"] == a["seed"]]
    return {"teach_5x20_wall_s": trained, "teach_5x20_target_s": TARGET_TEACH_S,
            "pair_5x20_wall_s": pairs, "pair_target_s": TARGET_PAIR_S,
            "teach_5x20_cpu_s": [r["cpu_s"] for r in pick if r["start"] == "trained"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.teach", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="the genuine CIFAR-10 (train.npz/test.npz or torchvision's)")
    p.add_argument("--work", default="runs/teach-benchmark", help="where the base network is kept between runs")
    p.add_argument("--base-epochs", type=int, default=10)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 100], help="images per class to teach from")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, nargs="+", default=[150, 75], help="teach lengths (the first also from "
                                                                            "scratch)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--base-only", action="store_true", help="train (or check) the base network, then stop")
    p.add_argument("--out", default="benchmarks/results-teach.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_cifar10(args.data_dir)
    base_train, base_test = select_classes(data.train, BASE_CLASSES), select_classes(data.test, BASE_CLASSES)
    new_train, new_test = select_classes(data.train, NEW_CLASSES), select_classes(data.test, NEW_CLASSES)
    report = {"machine": machine(), "base_classes": BASE_CLASSES, "new_classes": NEW_CLASSES,
              "teach_defaults": TeachConfig().to_dict(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    base, report["base"] = base_model(base_train, base_test, Path(args.work) / "base-r20.safetensors",
                                      args.base_epochs, seed=0)
    if args.base_only:
        return 0
    rows = transfer_rows(new_train, new_test, base, args.sizes, args.seeds, args.steps)
    report.update(runs=rows, summary=summary(rows), timing=timing(rows),
                  finished=time.strftime("%Y-%m-%d %H:%M:%S"), machine_after=machine())
    atomic_write_json(args.out, report)
    for s in report["summary"]:
        log(f"{s['per_class']:>3}/class {s['steps']:>3} steps from {s['start']:<7}: mean {100 * s['mean']:.1f}% "
            f"(min {100 * s['min']:.1f}, max {100 * s['max']:.1f}, {s['runs']} runs)")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
