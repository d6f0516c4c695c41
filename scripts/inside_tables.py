"""Measure the shipped Fig. 7 and block-knockout tables on the genuine CIFAR-10 test set (10,000 images).

    python scripts/inside_tables.py fig7 --data-dir DIR        # -> weights/fig7.json, a few minutes on 2 cores
    python scripts/inside_tables.py knockout --data-dir DIR    # -> weights/knockout.json, about an hour

DIR holds test.npz (or torchvision's cifar-10-batches-py). Both run in fp32 on the CPU, in batches of 250.
The knockout table is written after each model, and each model's running counts after every batch, so an
interrupted run resumes where it stopped when run again. Several processes can fill one table, one model
each (--models), which is how the shipped one was made on 2 cores:

    python scripts/inside_tables.py knockout --data-dir DIR --models resnet110-e100 &
    python scripts/inside_tables.py knockout --data-dir DIR --models resnet56-e100,plain56

Each file records the command, the machine, the precision, the wall time and
the sha256 of the test images it measured, so a reader can tell the numbers came from the genuine set.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import cpu_model  # noqa: E402
from resnet_demo.anatomy import response_stds  # noqa: E402
from resnet_demo.data import Split, load_cifar10, normalize  # noqa: E402
from resnet_demo.knockout import Counts, knockout_table  # noqa: E402
from resnet_demo.storage import atomic_write_json  # noqa: E402
from resnet_demo.weights import resolve, weights_dir  # noqa: E402

FIG7_MODELS = ("plain20", "plain56", "resnet20-e100", "resnet56-e100", "resnet110-e100")
KNOCKOUT_MODELS = ("resnet56-e100", "plain56", "resnet110-e100")
BATCH = 250


def cpu_name() -> str:
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def batches(split: Split, labels: bool = False):
    for i in range(0, len(split), BATCH):
        x = normalize(torch.from_numpy(split.images[i:i + BATCH]).permute(0, 3, 1, 2))
        yield (x, torch.from_numpy(split.labels[i:i + BATCH])) if labels else x


def provenance(kind: str, split: Split, argv: list[str]) -> dict:
    digest = hashlib.sha256(split.images.tobytes() + split.labels.astype("int64").tobytes()).hexdigest()
    args = [("DIR" if prev == "--data-dir" else a) for prev, a in zip([""] + argv, argv)]
    return {
        "command": "python scripts/inside_tables.py " + " ".join(args),
        "test_set": {"images": len(split), "sha256_images_labels": digest},
        "precision": "fp32",
        "hardware": cpu_name(),
        "torch": torch.__version__,
        "kind": kind,
    }


def model_record(name: str) -> tuple[torch.nn.Module, dict]:
    entry = resolve(name)
    return entry.load(), {"label": entry.label, "depth": entry.arch.depth, "plain": entry.arch.plain,
                          "weights_sha256": entry.sha256, "manifest_test_accuracy": entry.test_accuracy}


def run_fig7(split: Split, models: list[str], out: Path, argv: list[str]) -> None:
    result = {**provenance("fig7", split, argv), "models": {}}
    for name in models:
        model, rec = model_record(name)
        t0 = time.perf_counter()
        stds = response_stds(model, batches(split))
        rec.update(layers=stds["layers"], std=[round(s, 5) for s in stds["std"]],
                   wall_s=round(time.perf_counter() - t0, 1))
        result["models"][name] = rec
        print(f"{name}: {len(rec['std'])} layers, mean std {sum(rec['std']) / len(rec['std']):.3f}, "
              f"{rec['wall_s']} s", flush=True)
    atomic_write_json(out, result)


def run_knockout(split: Split, models: list[str], out: Path, argv: list[str]) -> None:
    prov = provenance("knockout", split, argv)
    for name in models:
        model, rec = model_record(name)
        partial = ROOT / ".cache" / "inside_tables" / f"{out.stem}.{name}.partial.json"  # a killed run resumes here
        counts, spent = Counts(), 0.0
        if partial.is_file():
            saved = json.loads(partial.read_text())
            if (saved["weights_sha256"], saved["test_sha256"]) == (rec["weights_sha256"], prov["test_set"]["sha256_images_labels"]):
                counts, spent = Counts.from_dict(saved["counts"]), saved["wall_s"]
                print(f"  {name}: resuming after {counts.images:,} images ({spent:.0f} s so far)", flush=True)
        t0 = time.perf_counter()

        def progress(c: Counts) -> None:
            wall = spent + time.perf_counter() - t0
            atomic_write_json(partial, {"weights_sha256": rec["weights_sha256"], "counts": c.to_dict(), "wall_s": wall,
                                        "test_sha256": prov["test_set"]["sha256_images_labels"]})
            print(f"  {name}: {c.images:,}/{len(split):,} images, {wall:.0f} s", flush=True)

        rest = Split(split.images[counts.images:], split.labels[counts.images:])
        table = knockout_table(model, batches(rest, labels=True), progress=progress, counts=counts)
        for row in table["blocks"]:
            row["accuracy"], row["changed"] = round(row["accuracy"], 4), round(row["changed"], 4)
        rec.update(intact_accuracy=table["intact_accuracy"], images=table["images"], blocks=table["blocks"],
                   wall_s=round(spent + time.perf_counter() - t0, 1), hardware=cpu_name(), command=prov["command"])
        # several processes may fill one table (one model each): merge into what is there now, not at our start
        result = json.loads(out.read_text()) if out.is_file() else {"models": {}}
        result.update({k: v for k, v in prov.items() if k != "command"})
        result["command"] = "python scripts/inside_tables.py knockout --data-dir DIR"
        result["models"][name] = rec
        atomic_write_json(out, result)
        partial.unlink()
        worst = min(table["blocks"], key=lambda r: r["accuracy"])
        print(f"{name}: intact {100 * rec['intact_accuracy']:.2f}%, worst knockout {worst['block']} "
              f"{100 * worst['accuracy']:.2f}%, {rec['wall_s']} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("fig7", "knockout"))
    p.add_argument("--data-dir", required=True, help="the genuine CIFAR-10 (test.npz)")
    p.add_argument("--models", help="comma-separated shipped names (default: the paper's set for each table)")
    p.add_argument("--out", help="default: weights/fig7.json or weights/knockout.json")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared CPU one thread per process wastes no time spinning; "
                        "run one process per model to use more cores)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    split = load_cifar10(args.data_dir, download=False).test
    models = args.models.split(",") if args.models else list(FIG7_MODELS if args.what == "fig7" else KNOCKOUT_MODELS)
    out = Path(args.out) if args.out else weights_dir() / f"{args.what}.json"
    (run_fig7 if args.what == "fig7" else run_knockout)(split, models, out, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
