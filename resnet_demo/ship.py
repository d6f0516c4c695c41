"""Turn a finished run into a shipped model: weights/<name>.safetensors + history + predictions + manifest entry;
retire a shipped model once a better one of its architecture is shipped; and park an unfinished run's checkpoint
in weights/in-progress/ so that a long CPU run survives the machine it started on (shipping it removes it).

Every shipped figure is measured on the shipped file itself (after any fp16 conversion), on the real test set.
The Test-set page browses mistakes without the data set, so the test images it needs are shipped too:
weights/test_images.npz holds the images any shipped model gets wrong, plus a small gallery per class, as one
lossless WebP mosaic (mosaic.py).
"""
from __future__ import annotations

import io
import json
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from .checkpoint import FILENAME as CHECKPOINT, read_state
from .checkpoint import drop_momentum as drop_momentum_from
from .data import Split, load_cifar10
from .evaluate import evaluate, predictions_arrays
from .events import latest_run, read_events
from .paper import CLASSES
from .model import Arch
from .mosaic import decode_mosaic, encode_mosaic
from .storage import atomic_write_bytes, atomic_write_json
from .weights import (WeightsError, load_model, read_manifest, save_model, save_predictions, shipped_models,
                      weights_dir, write_manifest_entry)

GALLERY_PER_CLASS = 12
MAX_STEP_EVENTS = 400  # the shipped history keeps every epoch but thins the step records
IN_PROGRESS = "in-progress"


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
    model, meta = load_model(run / record["file"], record.get("sha256"))
    arch = meta["arch"]
    name = name or arch.name
    directory.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else None
    sha = save_model(directory / f"{name}.safetensors", model, arch, dtype=dtype)
    shipped, _ = load_model(directory / f"{name}.safetensors", sha)
    data = load_cifar10(data_dir, download=download)
    result = evaluate(shipped, data.test, "cpu", flip_tta=True)
    save_predictions(directory / f"{name}.preds.npz", predictions_arrays(result["probs"], data.test.labels))
    history = thin_history(read_events(run / record.get("history", "events.jsonl")))
    atomic_write_bytes(directory / f"{name}.history.jsonl", "".join(json.dumps(e) + "\n" for e in history).encode())
    record.update(
        name=name, file=f"{name}.safetensors", sha256=sha, history=f"{name}.history.jsonl",
        predictions=f"{name}.preds.npz", stored_dtype="float16" if fp16 else "float32",
        test_accuracy=result["accuracy"], test_accuracy_flip_tta=result["accuracy_flip_tta"],
        test_loss=result["loss"], test_images=result["n"], per_class=result["per_class"],
        confusion=result["confusion"], evaluated_with=f"python -m resnet_demo evaluate --weights {name} --data-dir DIR",
        shipped_with="python -m resnet_demo " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["ship"] else None,
    )
    write_manifest_entry(name, record, directory)
    write_test_images(directory, data.test)
    shutil.rmtree(directory / IN_PROGRESS / run.name, ignore_errors=True)  # its parked checkpoint is done with
    if (directory / IN_PROGRESS).is_dir() and not any((directory / IN_PROGRESS).iterdir()):
        (directory / IN_PROGRESS).rmdir()
    return record


def park_run(run: Path, directory: Path | None = None, drop_momentum: bool = False) -> dict:
    """Copy an unfinished run's last checkpoint, config and thinned history to weights/in-progress/<run name>.

    Safe while the run trains: the checkpoint is replaced atomically, so the copy is one whole checkpoint, and
    the history is cut at that checkpoint's step, so a resume from the copy repeats no record. `drop_momentum`
    halves the copy (checkpoint.drop_momentum) for a checkpoint that would not fit in weights/ otherwise.
    """
    directory = directory or weights_dir()
    if (run / "metrics.json").exists():
        raise WeightsError(f"{run} has finished; ship it instead of parking it")
    if not (run / CHECKPOINT).exists():
        raise WeightsError(f"{run} has no checkpoint yet (one is written after every epoch)")
    read_state(run / CHECKPOINT)  # a damaged checkpoint is refused before anything is written
    dest = directory / IN_PROGRESS / run.name
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / (CHECKPOINT + ".tmp")
    shutil.copyfile(run / CHECKPOINT, tmp)  # the run may have replaced it since: read the state of the copy
    state = drop_momentum_from(tmp) if drop_momentum else read_state(tmp)
    tmp.replace(dest / CHECKPOINT)
    atomic_write_bytes(dest / "config.json", (run / "config.json").read_bytes())
    events = [e for e in read_events(run / "events.jsonl")
              if e.get("type") == "start" or e.get("step", 0) <= state["step"]]
    atomic_write_bytes(dest / "events.jsonl", "".join(json.dumps(e) + "\n" for e in thin_history(events)).encode())
    return {"path": dest, **state}


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
    atomic_write_json(directory / "manifest.json", manifest)
    for key in ("file", "predictions"):
        if old.get(key):
            (directory / old[key]).unlink(missing_ok=True)
    try:
        write_test_images(directory)
    except WeightsError:
        pass  # no (or a damaged) test_images.npz to shrink: what is there stays, and the app copes without it
    return record


def write_test_images(directory: Path, test: Split | None = None) -> None:
    """The test images the app shows without the data set: every shipped model's mistakes + a gallery.

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
    buf = io.BytesIO()
    np.savez(buf, indices=idx.astype(np.int32), labels=labels[rows].astype(np.uint8),
             webp=np.frombuffer(encode_mosaic(images[rows]), dtype=np.uint8))
    atomic_write_bytes(directory / "test_images.npz", buf.getvalue())


def read_test_images(directory: Path | None = None) -> dict[int, tuple[np.ndarray, int]] | None:
    """{test index: (32x32x3 uint8 image, label)} of the shipped test images, or None if there are none."""
    path = (directory or weights_dir()) / "test_images.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        indices, labels = z["indices"], z["labels"]
        # Files written before the WebP mosaic hold the raw pixels.
        images = z["images"] if "images" in z.files else decode_mosaic(z["webp"], len(indices))
    return {int(i): (img, int(lab)) for i, img, lab in zip(indices, images, labels)}
