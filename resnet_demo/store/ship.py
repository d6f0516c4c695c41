"""Model administration: ship a finished run into weights/, and retire a shipped model for a better one.

Shipping writes weights/<name>.safetensors + history + predictions + a manifest entry. Every shipped figure is
measured on the shipped file itself (after any fp16 conversion), on the real test set. The Test-set page
browses mistakes without the data set, so the test images it needs are shipped too (testimages.py): the images
any shipped model gets wrong, plus a small gallery per class.

weights/ travels with every clone, so it has a budget: a teacher's fresh laptop gets it in one quick pull.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from resnet_demo.data.cifar import Split
from resnet_demo.data.download import load_or_download
from resnet_demo.data.testimages import read_test_images, write_test_images
from resnet_demo.nets.model import Arch
from resnet_demo.nets.paper import CLASSES
from resnet_demo.store.evaluate import evaluate, save_predictions
from resnet_demo.store.events import latest_run, read_events, write_events
from resnet_demo.store.manifest import read_manifest, write_manifest, write_manifest_entry
from resnet_demo.store.registry import shipped_models, weights_dir
from resnet_demo.store.weights import WeightsError, load_model, save_model

BUDGET_BYTES = 30_000_000
GALLERY_PER_CLASS = 12
MAX_STEP_EVENTS = 400  # the shipped history keeps every epoch but thins the step records


def size_bytes(directory: Path | None = None) -> int:
    """All files under weights/ (or another directory), for the budget above."""
    return sum(f.stat().st_size for f in (directory or weights_dir()).rglob("*") if f.is_file())


def thin_history(events: list[dict]) -> list[dict]:
    """The last run's records (after the final fresh start), with at most MAX_STEP_EVENTS step records."""
    events = latest_run(events)
    steps = [i for i, e in enumerate(events) if e.get("type") == "step"]
    keep_steps = set(steps[:: max(1, -(-len(steps) // MAX_STEP_EVENTS))])
    return [e for i, e in enumerate(events) if e.get("type") != "step" or i in keep_steps]


def ship_run(run: Path, name: str | None = None, fp16: bool = False, data_dir: str | None = None,
             download: bool | None = None, directory: Path | None = None) -> dict:
    directory = directory or weights_dir()
    try:
        record = json.loads((run / "metrics.json").read_text())
    except FileNotFoundError:
        raise WeightsError(f"{run} is not a finished run (no metrics.json); finish or --resume it first") from None
    if record.get("taught_from") or tuple(record.get("classes") or CLASSES) != CLASSES:
        raise WeightsError(f"{run} holds a model taught classes of its own; only CIFAR-10 models are shipped, since "
                           f"every shipped figure is measured on CIFAR-10's test set")
    model, meta = load_model(run / record["file"], record.get("sha256"))
    name = name or meta["arch"].name
    directory.mkdir(parents=True, exist_ok=True)
    sha = save_model(directory / f"{name}.safetensors", model, meta["arch"], dtype=torch.float16 if fp16 else None)
    shipped, _ = load_model(directory / f"{name}.safetensors", sha)
    data = load_or_download(data_dir, download)
    result = evaluate(shipped, data.test, "cpu", flip_tta=True)
    save_predictions(directory / f"{name}.preds.npz", result["probs"], data.test.labels)
    history = read_events(run / record.get("history", "events.jsonl"))
    write_events(directory / f"{name}.history.jsonl", thin_history(history))
    record.update(
        name=name, file=f"{name}.safetensors", sha256=sha, history=f"{name}.history.jsonl",
        predictions=f"{name}.preds.npz", stored_dtype="float16" if fp16 else "float32",
        test_accuracy=result["accuracy"], test_accuracy_flip_tta=result["accuracy_flip_tta"],
        test_loss=result["loss"], test_images=result["n"], per_class=result["per_class"],
        confusion=result["confusion"], evaluated_with=f"python -m resnet_demo evaluate --weights {name} --data-dir DIR",
        shipped_with="python -m resnet_demo " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["ship"] else None,
    )
    write_manifest_entry(name, record, directory)
    update_test_images(directory, data.test)
    return record


# What a retired model's record keeps (beside these, its figures move under "retired"): what it was and how it
# was trained, for Fig. 6's legend and the README; its measured figures no longer have a file to come from.
RETIRED_FIGURES = ("file", "sha256", "stored_dtype", "test_accuracy", "test_accuracy_flip_tta")
DROPPED_ON_RETIRE = ("predictions", "test_loss", "test_images", "per_class", "confusion", "evaluated_with")


def retire_model(name: str, successor: str, directory: Path | None = None) -> dict:
    """Drop a shipped model's weights and predictions for a better shipped model of the same architecture.

    The manifest is rewritten first, so a crash can leave a stray file behind but never a record without one.
    """
    directory = directory or weights_dir()
    manifest = read_manifest(directory)
    models = manifest.get("models", {})
    for n in (name, successor):
        if n not in models:
            raise WeightsError(f"no shipped model named {n!r}; shipped: {', '.join(models) or 'none'}")
    old, new = models[name], models[successor]
    if name == successor or Arch.from_dict(old) != Arch.from_dict(new):
        raise WeightsError(f"{name!r} ({Arch.from_dict(old).label}) can only be retired for another shipped model "
                           f"of its architecture, not {successor!r} ({Arch.from_dict(new).label})")
    if new["test_accuracy"] < old["test_accuracy"]:
        raise WeightsError(f"{successor!r} ({100 * new['test_accuracy']:.2f}%) is less accurate than {name!r} "
                           f"({100 * old['test_accuracy']:.2f}%); retire a model only for a better one")
    record = {k: v for k, v in old.items() if k not in RETIRED_FIGURES + DROPPED_ON_RETIRE}
    record["retired"] = {"for": successor, **{k: old.get(k) for k in RETIRED_FIGURES}}
    del models[name]
    manifest.setdefault("retired", {})[name] = record
    write_manifest(directory, manifest)
    for key in ("file", "predictions"):
        if old.get(key):
            (directory / old[key]).unlink(missing_ok=True)
    try:
        update_test_images(directory)
    except WeightsError:
        pass  # no (or a damaged) test_images.npz to shrink: what is there stays, and the app copes without it
    return record


def update_test_images(directory: Path, test: Split | None = None) -> None:
    """Ship the test images the app shows without the data set: every shipped model's mistakes + a gallery.

    Without the test split the images come from the shipped file itself, which is enough after a retirement.
    """
    if test is not None:
        indices, labels, images = np.arange(len(test.labels)), test.labels, test.images
    else:
        shipped = read_test_images(directory)
        if not shipped:
            raise WeightsError(f"{directory} has no test images to rewrite; pass the test set")
        indices = np.array(sorted(shipped), dtype=np.int64)
        labels = np.array([shipped[i][1] for i in indices], dtype=np.int64)
        images = np.stack([shipped[i][0] for i in indices])
    needed: set[int] = set()
    for entry in shipped_models(directory):
        preds = entry.load_predictions()
        if preds is not None:
            needed.update(np.flatnonzero(preds["pred"] != preds["labels"]).tolist())
    for c in range(len(CLASSES)):
        needed.update(indices[labels == c][:GALLERY_PER_CLASS].tolist())
    idx = np.array(sorted(needed), dtype=np.int64)
    if not np.isin(idx, indices).all():
        raise WeightsError("the shipped test images lack some that the shipped models need; pass the test set")
    rows = np.searchsorted(indices, idx)
    write_test_images(directory, idx, labels[rows], images[rows])
