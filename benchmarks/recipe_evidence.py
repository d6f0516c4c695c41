"""`python -m benchmarks.recipe_evidence`: the table6 preset's epochs per depth, derived from the shipped histories.

Each shipped ResNet has two `fast` runs at batch 256 (weights/resnetD.history.jsonl: 40 epochs, and
resnetD-e100.history.jsonl: 100 epochs), each with its per-epoch test accuracy on all 10,000 test images.
For each depth this prints when each run crossed Table 6, its final margin over it, and the fewest epochs (in
fives) at which the final accuracy, interpolated log-linearly in the epochs between the two runs, clears Table 6
by MARGIN points: recipes.TABLE6_EPOCHS must equal that column (tests/test_table6_recipe.py checks it).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from resnet_demo.nets.paper import TABLE6_ERROR
from resnet_demo.store.events import epochs as epoch_rows
from resnet_demo.store.events import read_events

REPO = Path(__file__).resolve().parent.parent
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


def evidence(weights: Path = REPO / "weights") -> list[dict]:
    rows = []
    for depth in DEPTHS:
        goal = 100 - TABLE6_ERROR[depth]
        runs = {n: curve(weights / f"resnet{depth}{suffix}.history.jsonl") for n, suffix in ((40, ""), (100, "-e100"))}
        finals = {n: acc[max(acc)] for n, acc in runs.items()}
        rows.append({
            "depth": depth, "table6_accuracy": goal,
            **{f"final_{n}": round(finals[n], 2) for n in runs},
            **{f"margin_{n}": round(finals[n] - goal, 2) for n in runs},
            **{f"crossed_{n}": first_at_or_above(runs[n], goal) for n in runs},
            "epochs": needed_epochs((40, finals[40]), (100, finals[100]), goal),
        })
    return rows


def _crossed(row: dict, epochs: int) -> str:
    """When the run of `epochs` epochs first reached Table 6, in words."""
    at = row[f"crossed_{epochs}"]
    return "never" if at is None else f"epoch {at}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = evidence()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'depth':>5}  {'Table 6':>7}  {'40 ep: final':>12}  {'crossed at':>10}  {'100 ep: final':>13}  "
          f"{'crossed at':>10}  {'epochs (+' + str(MARGIN) + ')':>12}")
    for r in rows:
        print(f"{r['depth']:>5}  {r['table6_accuracy']:>7.2f}  {r['final_40']:>7.2f} ({r['margin_40']:+.2f})  "
              f"{_crossed(r, 40):>10}  {r['final_100']:>8.2f} ({r['margin_100']:+.2f})  {_crossed(r, 100):>10}  "
              f"{r['epochs']:>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
