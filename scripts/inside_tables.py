"""Measure the shipped Fig. 7 and block-knockout tables on the genuine CIFAR-10 test set (10,000 images).

    python scripts/inside_tables.py fig7 --data-dir DIR        # -> weights/fig7.json, a few minutes on 2 cores
    python scripts/inside_tables.py knockout --data-dir DIR    # -> weights/knockout.json, about an hour

DIR holds test.npz (or torchvision's cifar-10-batches-py). Both run in fp32 on the CPU, in batches of 250.
The knockout table is written after each model, and each model's running counts after every batch, so an
interrupted run resumes where it stopped when run again. Several processes can fill one table, one model
each (--models), or one model in parts (--shard), which is how the shipped one was made on 2 cores:

    python scripts/inside_tables.py knockout --data-dir DIR --models resnet56-e100,plain56 &
    python scripts/inside_tables.py knockout --data-dir DIR --models resnet110-e100 --shard 1/2 &
    python scripts/inside_tables.py knockout --data-dir DIR --models resnet110-e100 --shard 2/2

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

from resnet_demo.base.device import cpu_model  # noqa: E402
from resnet_demo.base.storage import atomic_write_json  # noqa: E402
from resnet_demo.data.cifar import Split, load_cifar10  # noqa: E402
from resnet_demo.data.loader import normalize  # noqa: E402
from resnet_demo.interpret.anatomy import response_stds  # noqa: E402
from resnet_demo.interpret.knockout import Counts, knockout_table  # noqa: E402
from resnet_demo.store.registry import resolve, weights_dir  # noqa: E402

FIG7_MODELS = ("plain20", "plain56", "resnet20-e100", "resnet56-e100", "resnet110-e100")
KNOCKOUT_MODELS = ("resnet56-e100", "plain56", "resnet110-e100")
BATCH = 250


def cpu_name() -> str:
    threads = torch.get_num_threads()
    return f"{cpu_model()}, {threads} thread{'s' if threads > 1 else ''}"


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


def _shard_files(out: Path, name: str, shards: int) -> list[Path]:
    return [ROOT / ".cache" / "inside_tables" / f"{out.stem}.{name}.{i}-of-{shards}.json" for i in range(shards)]


def _progress_saver(name: str, mine: Path, key: dict, spent: float, shard: tuple[int, int], size: int):
    """The knockout's progress callback for one model's shard: it saves the running counts and says how far it is.

    A function of its own so that each model's callback holds that model's values (no loop variable is shared).
    """
    i, n = shard
    t0 = time.perf_counter()

    def progress(c: Counts) -> None:
        wall = spent + time.perf_counter() - t0
        atomic_write_json(mine, {**key, "counts": c.to_dict(), "wall_s": wall, "done": c.images == size})
        print(f"  {name}: {c.images:,}/{size:,} images{f' (shard {i + 1} of {n})' if n > 1 else ''}, "
              f"{wall:.0f} s", flush=True)

    return progress


def run_knockout(split: Split, models: list[str], out: Path, argv: list[str], shard: tuple[int, int] = (0, 1)) -> None:
    """Each model's images [i*N/n, (i+1)*N/n) for shard i of n; the shard that finishes last writes the table."""
    prov = provenance("knockout", split, argv)
    i, n = shard
    lo, hi = i * len(split) // n, (i + 1) * len(split) // n
    test_sha = prov["test_set"]["sha256_images_labels"]
    for name in models:
        model, rec = model_record(name)
        mine = _shard_files(out, name, n)[i]  # running counts, then final ones: a killed run resumes here
        counts, spent = Counts(), 0.0
        if mine.is_file():
            saved = json.loads(mine.read_text())
            if (saved["weights_sha256"], saved["test_sha256"]) == (rec["weights_sha256"], test_sha):
                counts, spent = Counts.from_dict(saved["counts"]), saved["wall_s"]
                print(f"  {name}: resuming after {counts.images:,} images ({spent:.0f} s so far)", flush=True)
        progress = _progress_saver(name, mine, {"weights_sha256": rec["weights_sha256"], "test_sha256": test_sha},
                                   spent, shard, hi - lo)
        start = lo + counts.images
        if start < hi:
            knockout_table(model, batches(Split(split.images[start:hi], split.labels[start:hi]), labels=True),
                           progress=progress, counts=counts)
        parts = [json.loads(f.read_text()) for f in _shard_files(out, name, n) if f.is_file()]
        if len(parts) < n or not all(p["done"] for p in parts):
            print(f"{name}: shard {i + 1} of {n} done; the last shard to finish writes the table", flush=True)
            continue
        total = Counts()
        for p in parts:
            c = Counts.from_dict(p["counts"])
            total.images += c.images
            total.intact_correct += c.intact_correct
            for k in c.correct:
                total.correct[k] = total.correct.get(k, 0) + c.correct[k]
                total.changed[k] = total.changed.get(k, 0) + c.changed[k]
        table = knockout_table(model, [], counts=total)
        for row in table["blocks"]:
            row["accuracy"], row["changed"] = round(row["accuracy"], 4), round(row["changed"], 4)
        rec.update(intact_accuracy=table["intact_accuracy"], images=table["images"], blocks=table["blocks"],
                   wall_s=round(max(p["wall_s"] for p in parts), 1), processes=n, hardware=cpu_name(),
                   command=prov["command"])
        # several processes may fill one table: merge into what is there now, not what was there at our start
        result = json.loads(out.read_text()) if out.is_file() else {"models": {}}
        result.update({k: v for k, v in prov.items() if k != "command"})
        result["command"] = "python scripts/inside_tables.py knockout --data-dir DIR"
        result["models"][name] = rec
        atomic_write_json(out, result)
        for f in _shard_files(out, name, n):
            f.unlink()
        worst = min(table["blocks"], key=lambda r: r["accuracy"])
        print(f"{name}: intact {100 * rec['intact_accuracy']:.2f}%, worst knockout {worst['block']} "
              f"{100 * worst['accuracy']:.2f}%, {rec['wall_s']} s", flush=True)


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, e.g. 1/2, got {text!r}") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"shard {text} is not one of 1/{n} .. {n}/{n}")
    return i - 1, n


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("fig7", "knockout"))
    p.add_argument("--data-dir", required=True, help="the genuine CIFAR-10 (test.npz)")
    p.add_argument("--models", help="comma-separated shipped names (default: the paper's set for each table)")
    p.add_argument("--out", help="default: weights/fig7.json or weights/knockout.json")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N",
                   help="knockout: measure only the I-th of N equal parts of the test set; run all N (in parallel) "
                        "and the last to finish writes the table")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared CPU one thread per process wastes no time spinning; "
                        "run one process per model to use more cores)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    split = load_cifar10(args.data_dir).test
    models = args.models.split(",") if args.models else list(FIG7_MODELS if args.what == "fig7" else KNOCKOUT_MODELS)
    out = Path(args.out) if args.out else weights_dir() / f"{args.what}.json"
    if args.what == "fig7":
        run_fig7(split, models, out, argv)
    else:
        run_knockout(split, models, out, argv, args.shard)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
