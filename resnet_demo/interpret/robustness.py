"""Does depth help against adversarial examples? Accuracy under attack for each model, as a small table.

`python -m resnet_demo robustness --model all --attack pgd --images 500 --out weights/robustness.json` measures
(attacks.robust_accuracy, whose docstring gives the exact definition) and writes the table one cell at a time,
so a stopped run loses at most the cell it was on and the same command goes on where it stopped: a cell already
in the file with the same model file (sha256), attack, settings and images is not measured again.

The file records, for each cell, the model's name and sha256, the attack and its settings, how many of the first
test images it used and the sha256 of their pixels, the count it got right and the accuracy; at the top, the
definition, the commands that made it and the library versions. The Fool-it page draws it (table_series).
"""
from __future__ import annotations

import json
import platform

try:
    import fcntl
except ImportError:  # Windows: no lock; run one measurement at a time there
    fcntl = None
from pathlib import Path

import captum
import torch

from resnet_demo.base.storage import atomic_write_json
from resnet_demo.interpret.attacks import BATCH, Settings
from resnet_demo.store.registry import weights_dir

FILENAME = "robustness.json"
DEFINITION = (
    "Accuracy on the first N CIFAR-10 test images (in the data set's order) after an untargeted attack against "
    "each image's true label, in pixel space [0, 1] before the normalisation, eval mode, float32. eps is in "
    "units of 1/255 (L-infinity). Loss: cross-entropy of the logits, image by image. FGSM: x' = clip01(x + eps "
    "sign(grad)). PGD: no random start, `steps` FGSM steps of step_fraction * eps, each projected into the "
    "eps-ball around x and clipped to [0, 1]. A pixel with a zero gradient is not moved. Captum's FGSM and PGD "
    f"(captum.robust) with zero_thresh 0; {BATCH} images a batch; correct means argmax of the logits equals the "
    "label. eps = 0 is the clean accuracy."
)
CAVEAT = ("FGSM takes one step along the gradient's sign; where the loss surface is flat near the image (gradient "
          "masking, which label smoothing can cause), it understates the damage. PGD, many small projected steps, "
          "is the fairer test.")
KEY_FIELDS = ("model", "sha256", "attack", "eps", "steps", "step_fraction", "images", "images_sha256")


def table_path(directory: Path | None = None) -> Path:
    """Where the shipped table lives: beside the shipped models."""
    return (directory or weights_dir()) / FILENAME


def new_table() -> dict:
    return {"what": "accuracy under adversarial attack, per shipped model", "definition": DEFINITION,
            "caveat": CAVEAT, "commands": [], "environment": {}, "models": {}, "results": []}


def read_table(path: Path | None = None) -> dict | None:
    """The table, or None when there is none; a ValueError when the file is not such a table."""
    path = path or table_path()
    try:
        table = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"the robustness table {Path(path).name} could not be read: {e}") from None
    if not isinstance(table, dict) or not isinstance(table.get("results"), list):
        raise ValueError(f"{Path(path).name} is not a robustness table (no list of results)")
    return table


def cell_key(row: dict) -> tuple:
    return tuple(row.get(k) for k in KEY_FIELDS)


def row_for(model: str, sha256: str, settings: Settings, images: int, images_sha256: str, data: str) -> dict:
    """A result row without its measurement (correct, accuracy, seconds are added when measured)."""
    s = settings.record() if settings.eps > 0 else {"attack": "none"}  # eps 0: the clean accuracy, no attack
    return {"model": model, "sha256": sha256, "attack": s["attack"], "eps": float(settings.eps),
            "steps": s.get("steps"), "step_fraction": s.get("step_fraction"),
            "images": int(images), "images_sha256": images_sha256, "data": data}


def find(table: dict, row: dict) -> dict | None:
    key = cell_key(row)
    return next((r for r in table["results"] if cell_key(r) == key and "accuracy" in r), None)


def record(table: dict, row: dict, model_info: dict, command: str) -> dict:
    """Put a measured row in the table (replacing the same cell), with its model's record and the command."""
    table["results"] = [r for r in table["results"] if cell_key(r) != cell_key(row)] + [row]
    table["results"].sort(key=lambda r: (r["model"], r["attack"] != "none", r["attack"], r["eps"]))
    table["models"][row["model"]] = model_info
    if command not in table["commands"]:
        table["commands"].append(command)
    table["environment"] = {"torch": torch.__version__.split("+")[0], "captum": captum.__version__,
                            "python": platform.python_version(), "dtype": "float32"}
    return table


def save_row(path: Path, row: dict, model_info: dict, command: str) -> dict:
    """Record one measured row in the table file and return the table: read afresh, merged and written atomically
    while holding a lock, so two runs (FGSM and PGD, say) can fill the same file at once without losing a row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        table = record(read_table(path) or new_table(), row, model_info, command)
        atomic_write_json(path, table)
    return table


def table_series(table: dict) -> list[dict]:
    """For the chart: one series a (model, attack, images, data): {"model", "label", "attack", "images", "data",
    "steps", "step_fraction", "eps": [...], "accuracy": [...]}, with ε = 0 (clean) first where it was measured
    on the same images."""
    clean = {(r["model"], r["images"], r.get("images_sha256")): r for r in table["results"]
             if r.get("attack") == "none" and "accuracy" in r}
    series: dict[tuple, dict] = {}
    for r in table["results"]:
        if r.get("attack") == "none" or "accuracy" not in r:
            continue
        key = (r["model"], r["attack"], r["images"], r.get("steps"), r.get("step_fraction"))
        info = table.get("models", {}).get(r["model"], {})
        s = series.setdefault(key, {"model": r["model"], "label": info.get("label", r["model"]),
                                    "attack": r["attack"], "images": r["images"], "data": r.get("data"),
                                    "steps": r.get("steps"), "step_fraction": r.get("step_fraction"), "points": {}})
        s["points"][r["eps"]] = r["accuracy"]
        base = clean.get((r["model"], r["images"], r.get("images_sha256")))
        if base is not None:
            s["points"][0.0] = base["accuracy"]
    out = []
    for s in series.values():
        eps = sorted(s.pop("points").items())
        out.append({**s, "eps": [e for e, _ in eps], "accuracy": [a for _, a in eps]})
    return out
