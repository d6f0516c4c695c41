"""Does depth help against adversarial examples? Accuracy under attack for each model, as a small table.

`python -m resnet_demo robustness --model all --attack pgd --images 500 --out weights/robustness.json` measures
(attacks.robust_accuracy, whose docstring gives the exact definition) and writes the table one cell at a time,
so a stopped run loses at most the cell it was on and the same command goes on where it stopped: a cell already
in the file with the same model file (sha256), attack, settings and images is not measured again.

The file records the definition, the commands that made it, the library versions, each model's sha256, and for each
count N of first test images the sha256 of their pixels; then one line a cell: model, attack (and PGD's steps and
step size), eps, N, the count it got right and the accuracy. The Fool-it page draws it (table_series).
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

from resnet_demo.base.storage import atomic_write_bytes
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
KEY_FIELDS = ("model", "attack", "eps", "steps", "step_fraction", "images")


def table_path(directory: Path | None = None) -> Path:
    """Where the shipped table lives: beside the shipped models."""
    return (directory or weights_dir()) / FILENAME


def new_table() -> dict:
    return {"what": "accuracy under adversarial attack, per shipped model", "definition": DEFINITION,
            "caveat": CAVEAT, "commands": [], "environment": {}, "models": {}, "test_images": {}, "results": []}


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


def row_for(model: str, settings: Settings, images: int) -> dict:
    """A result row without its measurement (correct, accuracy, seconds are added when measured); the PGD
    settings only for PGD, and attack "none" for eps 0 (the clean accuracy)."""
    s = settings.record() if settings.eps > 0 else {"attack": "none"}
    row = {"model": model, "attack": s["attack"], "eps": float(settings.eps)}
    if "steps" in s:
        row.update(steps=s["steps"], step_fraction=s["step_fraction"])
    return {**row, "images": int(images)}


def find(table: dict, row: dict, sha256: str, images: dict) -> dict | None:
    """The measured cell `row` stands for, if the table holds it for this very model file (sha256) and these
    very test images ({"sha256", "data"} of the first N); else None."""
    if table.get("models", {}).get(row["model"], {}).get("sha256") != sha256:
        return None
    if table.get("test_images", {}).get(str(row["images"])) != images:
        return None
    key = cell_key(row)
    return next((r for r in table["results"] if cell_key(r) == key and "accuracy" in r), None)


def record(table: dict, row: dict, model_info: dict, images: dict, command: str) -> dict:
    """Put a measured row in the table (replacing the same cell), with its model's record (its sha256), the test
    images' record and the command. Rows of another file of that model, or of other images of that count, go."""
    model, n = row["model"], str(row["images"])
    if table["models"].get(model, {}).get("sha256") != model_info["sha256"]:
        table["results"] = [r for r in table["results"] if r["model"] != model]
    if table.setdefault("test_images", {}).get(n) != images:
        table["results"] = [r for r in table["results"] if str(r["images"]) != n]
    table["results"] = [r for r in table["results"] if cell_key(r) != cell_key(row)] + [row]
    table["results"].sort(key=lambda r: (r["model"], r["attack"] != "none", r["attack"], -r["images"], r["eps"]))
    table["models"][model] = model_info
    table["test_images"][n] = images
    if command not in table["commands"]:
        table["commands"].append(command)
    table["environment"] = {"torch": torch.__version__.split("+")[0], "captum": captum.__version__,
                            "python": platform.python_version(), "dtype": "float32"}
    return table


def dumps(table: dict) -> str:
    """The table as JSON, one result a line (a few kB for seven models)."""
    head = json.dumps({k: v for k, v in table.items() if k != "results"}, indent=1, allow_nan=False)
    rows = ",\n  ".join(json.dumps(r, allow_nan=False) for r in table["results"])
    return head[:-2] + ',\n "results": [\n  ' + rows + "\n ]\n}\n"


def save_row(path: Path, row: dict, model_info: dict, images: dict, command: str) -> dict:
    """Record one measured row in the table file and return the table: read afresh, merged and written atomically
    while holding a lock, so two runs (FGSM and PGD, say) can fill the same file at once without losing a row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        table = record(read_table(path) or new_table(), row, model_info, images, command)
        atomic_write_bytes(path, dumps(table).encode())
    return table


def table_series(table: dict) -> list[dict]:
    """For the chart: one series a (model, attack, images): {"model", "label", "attack", "images", "data",
    "steps", "step_fraction", "eps": [...], "accuracy": [...]}, with ε = 0 (clean) first where it was measured
    on the same images."""
    clean = {(r["model"], r["images"]): r["accuracy"] for r in table["results"]
             if r.get("attack") == "none" and "accuracy" in r}
    series: dict[tuple, dict] = {}
    for r in table["results"]:
        if r.get("attack") == "none" or "accuracy" not in r:
            continue
        key = (r["model"], r["attack"], r["images"], r.get("steps"), r.get("step_fraction"))
        info = table.get("models", {}).get(r["model"], {})
        data = table.get("test_images", {}).get(str(r["images"]), {}).get("data")
        s = series.setdefault(key, {"model": r["model"], "label": info.get("label", r["model"]),
                                    "attack": r["attack"], "images": r["images"], "data": data,
                                    "steps": r.get("steps"), "step_fraction": r.get("step_fraction"), "points": {}})
        s["points"][r["eps"]] = r["accuracy"]
        if (r["model"], r["images"]) in clean:
            s["points"][0.0] = clean[(r["model"], r["images"])]
    out = []
    for s in series.values():
        eps = sorted(s.pop("points").items())
        out.append({**s, "eps": [e for e, _ in eps], "accuracy": [a for _, a in eps]})
    return out
