"""`python -m benchmarks.recipe_evidence`: the table6 preset's epochs per depth, from the shipped histories and
the runs measured since.

Each shipped ResNet has two `fast` runs at batch 256 (weights/resnetD.history.jsonl: 40 epochs, and
resnetD-e100.history.jsonl: 100 epochs), each with its per-epoch test accuracy on all 10,000 test images.
For each depth this prints when each run crossed Table 6, its final margin over it, and the fewest epochs (in
fives) at which the final accuracy, interpolated log-linearly in the epochs between the two runs, clears Table 6
by MARGIN points.

One run per length can be lucky. RUNS (benchmarks/results-table6-runs.json) holds further `table6` runs, other
seeds and precisions, each with its per-epoch curve; `--add RUN_DIR` records a finished run folder there. Where
they show the interpolated length short at a depth (a run at that length or beyond ended below Table 6, or their
mean below it + MARGIN), the entry becomes the fewest measured length beyond every short one at which at least
two runs all reached Table 6 with a mean MARGIN above it. recipes.TABLE6_EPOCHS must equal the `epochs` column
(tests/test_table6_recipe.py checks it).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from resnet_demo.nets.paper import TABLE6_ERROR
from resnet_demo.store.events import epochs as epoch_rows
from resnet_demo.store.events import read_events

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "benchmarks" / "results-table6-runs.json"
MARGIN = 0.2    # points of accuracy above Table 6: about one to two seeds' spread of a CIFAR ResNet's final accuracy
STEP = 5        # epochs are chosen in fives
DEPTHS = (20, 32, 44, 56, 110)


def curve(path: Path) -> dict[int, float]:
    """Per-epoch test accuracy in %, epoch -> accuracy."""
    return {int(e["epoch"]): 100 * e["test_acc"] for e in epoch_rows(read_events(path))}


def first_at_or_above(acc: dict[int, float], goal: float) -> int | None:
    return next((e for e in sorted(acc) if acc[e] >= goal), None)


def needed_epochs(short: tuple[int, float], long: tuple[int, float], goal: float, margin: float = MARGIN,
                  step: int = STEP) -> int:
    """The fewest epochs (a multiple of `step`) whose log-linearly interpolated final accuracy is >= goal + margin."""
    (e1, a1), (e2, a2) = short, long
    slope = (a2 - a1) / math.log(e2 / e1)
    exact = e1 * math.exp((goal + margin - a1) / slope) if slope > 0 else float(e2)
    return max(step, step * math.ceil(round(exact, 6) / step))


def short(finals: list[float], goal: float, margin: float = MARGIN) -> bool:
    """A length falls short when any of its runs ended below Table 6, or their mean below it + margin."""
    return min(finals) < goal or statistics.fmean(finals) < goal + margin


def holds(finals: list[float], goal: float, margin: float = MARGIN) -> bool:
    return len(finals) >= 2 and not short(finals, goal, margin)


def chosen_epochs(interpolated: int, finals_by_length: dict[int, list[float]], goal: float,
                  margin: float = MARGIN) -> int | None:
    """The interpolated length, unless the runs measured at it or beyond show it short: then the fewest measured
    length beyond every short one where at least two runs hold (None: no measured length does yet)."""
    shorts = [n for n, f in finals_by_length.items() if n >= interpolated and short(f, goal, margin)]
    if not shorts:
        return interpolated
    return next((n for n in sorted(finals_by_length) if n > max(shorts) and holds(finals_by_length[n], goal, margin)),
                None)


def measured_runs(path: Path = RUNS) -> list[dict]:
    return json.loads(path.read_text())["runs"] if path.is_file() else []


def evidence(weights: Path = REPO / "weights", runs_path: Path = RUNS) -> list[dict]:
    rows, runs = [], measured_runs(runs_path)
    for depth in DEPTHS:
        goal = 100 - TABLE6_ERROR[depth]
        shipped = {n: curve(weights / f"resnet{depth}{suffix}.history.jsonl")
                   for n, suffix in ((40, ""), (100, "-e100"))}
        finals = {n: acc[max(acc)] for n, acc in shipped.items()}
        by_length: dict[int, list[float]] = {n: [a] for n, a in finals.items()}
        for r in runs:
            if r["depth"] == depth:
                by_length.setdefault(r["epochs"], []).append(100 * r["final"])
        interpolated = needed_epochs((40, finals[40]), (100, finals[100]), goal)
        rows.append({
            "depth": depth, "table6_accuracy": goal,
            **{f"final_{n}": round(finals[n], 2) for n in shipped},
            **{f"margin_{n}": round(finals[n] - goal, 2) for n in shipped},
            **{f"crossed_{n}": first_at_or_above(shipped[n], goal) for n in shipped},
            "interpolated": interpolated,
            "runs": {n: [round(a, 2) for a in f] for n, f in sorted(by_length.items())},
            "epochs": chosen_epochs(interpolated, by_length, goal),
        })
    return rows


def _placeholders(command: str) -> str:
    """The command with its folders as DATA and RUN: they name one machine's layout, not the run."""
    words = command.split()
    for flag, name in (("--data-dir", "DATA"), ("--out", "RUN")):
        if flag in words[:-1]:
            words[words.index(flag) + 1] = name
    return " ".join(words)


def run_record(run_dir: Path) -> dict:
    """A finished run folder as one entry of RUNS: its settings, its final single-view accuracy on the whole
    test set (metrics.json) and its per-epoch curve (events.jsonl)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics.get("test_images") != 10_000 or metrics.get("preset") != "table6":
        raise SystemExit(f"{run_dir}: not a table6 run evaluated on all 10,000 test images")
    rows = epoch_rows(read_events(run_dir / "events.jsonl"))
    return {
        "depth": metrics["depth"], "epochs": metrics["epochs"], "seed": metrics["seed"],
        "precision": metrics["precision"], "step_path": metrics["step_path"], "hardware": metrics["hardware"],
        "torch": metrics["torch"], "command": _placeholders(metrics["command"]),
        "wall_time_s": metrics["wall_time_s"],
        "final": metrics["test_accuracy"],
        "curve": [{"epoch": r["epoch"], "train_loss": round(r["train_loss"], 5),
                   "test_acc": None if r.get("test_acc") is None else round(r["test_acc"], 4)} for r in rows],
    }


def add_runs(run_dirs: list[Path], path: Path = RUNS) -> list[dict]:
    """Record finished runs in RUNS (a run of the same depth, length, seed and precision is replaced)."""
    from resnet_demo.base.storage import atomic_write_json

    record = json.loads(path.read_text()) if path.is_file() else {
        "what": "table6 preset runs beyond the shipped histories: final single-view accuracy on all 10,000 test "
                "images and the per-epoch curve (`python -m benchmarks.recipe_evidence --add RUN_DIR`)",
        "runs": []}
    key = lambda r: (r["depth"], r["epochs"], r["seed"], r["precision"])  # noqa: E731
    for d in run_dirs:
        new = run_record(Path(d))
        record["runs"] = [r for r in record["runs"] if key(r) != key(new)] + [new]
    record["runs"].sort(key=key)
    atomic_write_json(path, record)
    return record["runs"]


def _crossed(row: dict, epochs: int) -> str:
    """When the run of `epochs` epochs first reached Table 6, in words."""
    at = row[f"crossed_{epochs}"]
    return "never" if at is None else f"epoch {at}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--add", nargs="+", metavar="RUN_DIR", help="record finished table6 run folders first")
    args = p.parse_args(argv)
    if args.add:
        add_runs([Path(d) for d in args.add])
    rows = evidence()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'depth':>5}  {'Table 6':>7}  {'40 ep: final':>12}  {'crossed at':>10}  {'100 ep: final':>13}  "
          f"{'crossed at':>10}  {'interp. (+' + str(MARGIN) + ')':>14}  {'epochs':>6}")
    for r in rows:
        print(f"{r['depth']:>5}  {r['table6_accuracy']:>7.2f}  {r['final_40']:>7.2f} ({r['margin_40']:+.2f})  "
              f"{_crossed(r, 40):>10}  {r['final_100']:>8.2f} ({r['margin_100']:+.2f})  {_crossed(r, 100):>10}  "
              f"{r['interpolated']:>14}  {r['epochs'] if r['epochs'] is not None else 'unknown':>6}")
    print("\nfinal accuracy (%) of every run by length (the shipped runs first):")
    for r in rows:
        print(f"  ResNet-{r['depth']}: " + "; ".join(f"{n} ep: {', '.join(f'{a:.2f}' for a in f)}"
                                                     for n, f in r["runs"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
