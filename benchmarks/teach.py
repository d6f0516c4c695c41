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
VALIDATION = 200  # training images per new class kept aside to choose the learning rates on


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
    if "test_accuracy" not in record:
        record["test_accuracy"] = evaluate(model, test)["accuracy"]
        atomic_write_json(path.with_suffix(".json"), record)
    log(f"base network: {100 * record['test_accuracy']:.2f}% on the {len(test):,} test images of its classes")
    return model, record


def _every(n: int):
    def listener(e: dict) -> None:
        if e["type"] == "step" and e["step"] % n == 0:
            log(f"  step {e['step']}/{e['total_steps']} loss {e['loss']:.3f} ({e['elapsed_s']:.0f} s)")
    return listener


def few_per_class(split: Split, n: int, seed: int) -> Split:
    """n images of each class, drawn at random by the seed from the pool (a class's training images but its last
    VALIDATION, which the learning rates were chosen on)."""
    rng = np.random.default_rng(1000 + seed)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(split.labels == c)[:-VALIDATION], n, replace=False)
                                  for c in range(len(split.classes))]))
    return Split(split.images[idx], split.labels[idx], split.classes)


def validation(split: Split) -> Split:
    """The last VALIDATION training images of each class: never taught from, never the test set."""
    idx = np.concatenate([np.flatnonzero(split.labels == c)[-VALIDATION:] for c in range(len(split.classes))])
    return Split(split.images[idx], split.labels[idx], split.classes)


def lr_sweep(train: Split, base, lrs: dict[str, list[float]], seed: int = 0, n: int = 20) -> list[dict]:
    """The peak learning rate, from the trained network and from scratch, scored on validation images (taken
    from the training set) rather than the test set."""
    rows, few, val = [], few_per_class(train, n, seed), validation(train)
    for start, values in lrs.items():
        for lr in values:
            row = {"lr": lr, **one_teach(few, val, start, base, TeachConfig(lr=lr, holdout=0, seed=seed,
                                                                          eval_every=0))}
            row["validation_accuracy"] = row.pop("test_accuracy")
            log(f"  sweep: {n}/class from {start:<7} lr {lr}: {100 * row['validation_accuracy']:.1f}% on "
                f"{len(val):,} validation images ({row['wall_s']:.0f} s)")
            rows.append(row)
    return rows


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


def time_teaches(train: Split, base, repeats: int) -> list[dict]:
    """A teach of 5 classes x 20 images as the app and the CLI run it (the defaults: 16 of each class learnt
    from, 4 held out, 150 steps of 64) and the pair teach_both runs, `repeats` times each."""
    from resnet_demo.training.teach import teach_both

    rows, few = [], few_per_class(train, 20, 0)
    for i in range(repeats):
        cfg = TeachConfig(start="base")
        result, wall, cpu, load = timed(lambda: teach(few, cfg, base=base))  # noqa: B023
        rows.append({"what": "teach", "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load": load,
                     "threads": torch.get_num_threads(), "precision": result.record["precision"]})
        pair, wall, cpu, load = timed(lambda: teach_both(few, cfg, base=base))  # noqa: B023
        rows.append({"what": "pair", "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load": load,
                     "threads": torch.get_num_threads(), "each_s": [r.record["wall_time_s"] for r in pair.values()]})
        log(f"  timing {i + 1}/{repeats}: teach {rows[-2]['wall_s']:.1f} s, pair {rows[-1]['wall_s']:.1f} s wall "
            f"({torch.get_num_threads()} threads, load {load[0]:.1f})")
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
    p.add_argument("--sweep", action="store_true", help="only the learning-rate sweep (on validation images); "
                                                         "its rows are added to those already in --out")
    p.add_argument("--sweep-trained", type=float, nargs="*", default=[0.02, 0.05, 0.1])
    p.add_argument("--sweep-scratch", type=float, nargs="*", default=[0.05, 0.1, 0.2])
    p.add_argument("--timing", type=int, metavar="N", help="only time the teach of 5 x 20 and the pair, N times")
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
    if args.timing:
        report["timing_runs"] = time_teaches(new_train, base, args.timing)
        report["machine_after"] = machine()
        atomic_write_json(args.out, report)
        return 0
    if args.sweep:
        before = json.loads(Path(args.out).read_text()).get("lr_sweep", []) if Path(args.out).is_file() else []
        report["lr_sweep"] = before + lr_sweep(new_train, base, {"trained": args.sweep_trained,
                                                                 "scratch": args.sweep_scratch})
        atomic_write_json(args.out, report)
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
