"""Every model this installation can load, where its files are, and which one to show first.

Two sources of models:
- shipped: `weights/manifest.json` (+ <name>.safetensors, .history.jsonl, .preds.npz), $RESNET_DEMO_WEIGHTS;
- finished runs: `runs/<id>/` with model.safetensors and metrics.json (the same record as a manifest entry),
  $RESNET_DEMO_RUNS.
A record's "classes" names the model's outputs; one without means CIFAR-10's ten. A model taught other classes
(training/teach.py) is listed like any run, labelled with its classes, and is never the default model.
A shipped model superseded by a better one of its architecture can be retired: its weights leave weights/ (the
git history keeps them) and its training history stays under "retired", because Fig. 6 compares curves of
one recipe, not the best models.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from resnet_demo.base.storage import SHIPPED_WEIGHTS
from resnet_demo.nets.classes import check_names, is_cifar10
from resnet_demo.nets.model import Arch, CifarResNet
from resnet_demo.nets.paper import CLASSES
from resnet_demo.store.evaluate import load_predictions
from resnet_demo.store.events import read_events
from resnet_demo.store.manifest import read_manifest
from resnet_demo.store.weights import WeightsError, load_model, read_file_meta

ENV_WEIGHTS = "RESNET_DEMO_WEIGHTS"
ENV_RUNS = "RESNET_DEMO_RUNS"
# Guessing among ten classes scores 10 %; a model below 15 % has learned nothing a class could see (a run stopped
# after a few steps). It is no model to offer, though its training curve is still worth a look. With k classes
# the bar is 1.5 times chance likewise: 1.5 / k.
CHANCE_ACCURACY = 0.15


def at_chance_level(accuracy: float | None, num_classes: int = len(CLASSES)) -> bool:
    return accuracy is not None and accuracy < CHANCE_ACCURACY * len(CLASSES) / num_classes


def classes_label(classes: tuple[str, ...], limit: int = 40) -> str:
    """A model's classes in a few words: "cat, dog, teapot", or "12 classes: apple, banana, ..." when long."""
    text = ", ".join(classes)
    if len(text) <= limit:
        return text
    shown = ""
    for name in classes:
        if len(shown) + len(name) > limit - 8:
            break
        shown += name + ", "
    return f"{len(classes)} classes: {shown}..."


def weights_dir() -> Path:
    return Path(os.environ.get(ENV_WEIGHTS) or SHIPPED_WEIGHTS)


def runs_dir() -> Path:
    return Path(os.environ.get(ENV_RUNS) or "runs")


@dataclass
class ModelEntry:
    """One loadable model, shipped or trained here; `record` is its manifest/metrics record."""

    name: str
    label: str
    arch: Arch
    weights: Path | None  # None once retired
    source: str  # "shipped" | "run" | "file" | "retired"
    record: dict = field(default_factory=dict)
    history: Path | None = None
    predictions: Path | None = None

    @property
    def sha256(self) -> str | None:
        return self.record.get("sha256")

    @property
    def test_accuracy(self) -> float | None:
        return self.record.get("test_accuracy")

    @property
    def classes(self) -> tuple[str, ...]:
        """The names of the model's outputs, in order (CIFAR-10's for a record that names none)."""
        return tuple(self.record.get("classes") or CLASSES)

    @property
    def is_cifar10(self) -> bool:
        """Whether the model tells CIFAR-10's ten classes apart (the test set, its pages and the default apply)."""
        return is_cifar10(self.classes) and not self.taught

    @property
    def taught(self) -> bool:
        """Whether it was taught classes of a class's own (training/teach.py): its accuracy is on a few held-out
        images, not on CIFAR-10's test set."""
        return bool(self.record.get("taught_from"))

    @property
    def at_chance_level(self) -> bool:
        return at_chance_level(self.test_accuracy, len(self.classes))

    def load(self, device: str | torch.device = "cpu") -> CifarResNet:
        if self.weights is None:
            retired = self.record.get("retired", {})
            raise WeightsError(f"{self.name!r} was retired for {retired.get('for', 'a better model')!r}; only its "
                               f"training history is shipped (its weights are in the git history: "
                               f"git log -- weights/{retired.get('file', self.name + '.safetensors')})")
        model, meta = load_model(self.weights, self.sha256, device)
        if meta["arch"] != self.arch:  # e.g. another depth's file renamed, with no sha256 recorded to catch it
            raise WeightsError(f"{self.weights} holds {meta['arch'].label}, but {self.name!r} is listed as "
                               f"{self.arch.label}; the file was replaced or renamed")
        if tuple(meta["classes"]) != self.classes:
            raise WeightsError(f"{self.weights} knows other classes than {self.name!r} is listed with; the file "
                               f"was replaced or renamed")
        return model

    def load_predictions(self) -> dict[str, np.ndarray] | None:
        return load_predictions(self.predictions)

    def load_history(self) -> list[dict]:
        return read_events(self.history) if self.history else []


def _entry(name: str, record: dict, base: Path, source: str, label: str | None = None) -> ModelEntry:
    arch = Arch.from_dict(record)
    if "classes" in record:
        record = {**record, "classes": list(check_names(record["classes"]))}  # ClassNameError is a ValueError

    def opt(key: str) -> Path | None:
        return base / record[key] if record.get(key) else None

    weights = None if source == "retired" else base / record["file"]
    return ModelEntry(name=name, label=label or arch.label, arch=arch, weights=weights,
                      source=source, record=record, history=opt("history"), predictions=opt("predictions"))


def shipped_models(directory: Path | None = None) -> list[ModelEntry]:
    directory = directory or weights_dir()
    models = read_manifest(directory).get("models", {})
    entries = [_entry(name, rec, directory, "shipped") for name, rec in models.items()]
    for label in {e.label for e in entries}:
        twins = [e for e in entries if e.label == label]
        if len(twins) > 1:  # two shipped ResNet-32s, say: every picker must tell them apart
            epochs = [e.record.get("epochs") for e in twins]
            distinct = None not in epochs and len(set(epochs)) == len(epochs)
            for e, n in zip(twins, epochs, strict=True):
                e.label = f"{label} · {n} epochs" if distinct else f"{label} ({e.name})"
    return entries


def retired_models(directory: Path | None = None) -> list[ModelEntry]:
    """Retired shipped models: a record and a training history each, no weights."""
    directory = directory or weights_dir()
    retired = read_manifest(directory).get("retired", {})
    return [_entry(name, rec, directory, "retired") for name, rec in retired.items()]


def with_history(directory: Path | None = None) -> list[ModelEntry]:
    """Every shipped training history, retired models' included: what Fig. 6 and run comparisons draw."""
    entries = shipped_models(directory) + retired_models(directory)
    return [e for e in entries if e.history is not None and e.history.is_file()]


def finished_runs(directory: Path | None = None) -> list[ModelEntry]:
    """Runs with a metrics.json (written last, after model.safetensors), newest first."""
    directory = directory or runs_dir()
    out = []
    for metrics in sorted(directory.glob("*/metrics.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        run_id = metrics.parent.name
        try:
            rec = json.loads(metrics.read_text())
            arch = Arch.from_dict(rec)
            label = f"{arch.label} · run {run_id}"
            if not is_cifar10(rec.get("classes") or CLASSES):
                label = f"{arch.label} · {classes_label(check_names(rec['classes']))} · run {run_id}"
            out.append(_entry(f"run:{run_id}", rec, metrics.parent, "run", label))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # a foreign or damaged folder is skipped, not fatal
    return out


def list_models(include_chance: bool = False) -> list[ModelEntry]:
    """The models to offer: shipped ones, then finished runs, newest first; a run at chance level only when asked
    for (it can still be named, see resolve)."""
    entries = shipped_models() + finished_runs()
    return entries if include_chance else [e for e in entries if not e.at_chance_level]


def model_label(entry: ModelEntry, recipe: bool = False) -> str:
    """How a model is named to a person, in every picker and by the CLI: "ResNet-56 · 93.5%"; with `recipe`,
    how it was trained too, "ResNet-20 (resnet20) · fast preset, 40 epochs · 91.3%"."""
    bits = [f"{entry.label} ({entry.name})" if recipe and entry.source in ("shipped", "retired") else entry.label]
    if recipe:
        bits.append(how_trained(entry))
    if entry.test_accuracy is not None:
        held_out = "" if entry.is_cifar10 else " held out"
        chance = " (chance level)" if entry.at_chance_level else ""
        bits.append(f"{100 * entry.test_accuracy:.1f}%{held_out}{chance}")
    elif entry.source == "retired":
        bits.append("history only")
    return " · ".join(b for b in bits if b)


def how_trained(entry: ModelEntry) -> str:
    """The recipe in a few words: "fast preset, 40 epochs, subset" ("" when the record does not say)."""
    rec = entry.record
    if rec.get("taught_from"):
        return (f"taught from {rec['taught_from']}, {rec.get('steps', '?')} steps on "
                f"{rec.get('train_images', '?')} images")
    epochs = rec.get("epochs")
    bits = [rec.get("preset") and f"{rec['preset']} preset", epochs and f"{epochs} epoch{'s' if epochs != 1 else ''}",
            rec.get("subset") and "subset"]
    return ", ".join(str(b) for b in bits if b)


def resolve(name_or_path: str) -> ModelEntry:
    """A registry name (e.g. "resnet20", "run:<id>"), a path to a .safetensors file, or a folder holding a
    model.safetensors (what `teach --out` writes)."""
    for entry in list_models(include_chance=True):
        if entry.name == name_or_path:
            return entry
    for entry in retired_models():
        if entry.name == name_or_path:
            entry.load()  # raises, saying what it was retired for and where its weights went
    p = Path(name_or_path)
    if p.is_dir() and (p / "model.safetensors").is_file():  # a run's or a teach's folder
        p = p / "model.safetensors"
    if p.is_file():
        arch, classes = read_file_meta(p)
        label = arch.label if is_cifar10(classes) else f"{arch.label} · {classes_label(classes)}"
        return ModelEntry(name=str(p), label=label, arch=arch, weights=p, source="file",
                          record={"classes": list(classes)})
    known = ", ".join(e.name for e in list_models(include_chance=True)) or "none yet"
    raise WeightsError(f"no model named {name_or_path!r} and no such file; known models: {known}")


def default_model(entries: list[ModelEntry] | None = None) -> ModelEntry:
    """The model to use when none is named, by the CLI and the app alike: the most accurate residual net of those
    offered that knows CIFAR-10's classes (a taught model's accuracy on a few held-out images is no match for it);
    any model if none does, residual first."""
    entries = list_models() if entries is None else entries
    if not entries:
        raise WeightsError("no trained model yet: weights/manifest.json lists none and runs/ holds no finished run. "
                           "Train one with `python -m resnet_demo train --depth 20 --preset classroom`.")
    entries = [m for m in entries if m.is_cifar10] or entries  # is_cifar10 is False for any taught model
    residual = [m for m in entries if not m.arch.plain]
    return max(residual or entries, key=lambda m: m.test_accuracy or 0.0)
