"""Teach a network classes of a class's own from a few labelled images: fine-tune the whole network, live.

Measured on CIFAR-10 (BENCHMARKS.md, "Teaching new classes"): fine-tuning every layer beats a linear classifier on
frozen features by 30 points on images unlike CIFAR's, and starting from a trained network rather than random
weights is worth 20-30 points on photos like CIFAR's. So teach() starts from a trained model (by default the
shipped ResNet-20, with a new last layer sized to the new classes) or from random weights, and trains all of it:
a bounded number of SGD steps on batches of randomly cropped and flipped copies of the images, bf16 autocast where
the CPU has it, channels-last.

A fraction of each class's images is held out (stratified, chosen by the seed) and never trained on; the network
is scored on them at the end (accuracy, per class, confusion matrix) and, for a live chart, every `eval_every`
steps. Progress is a stream of events (dicts with a "type"), like a training run's:
  start: classes, start (what it started from), from_scratch, label, params, train_images, holdout_images,
         images_per_class, total_steps, batch_size, lr, device, precision, seed [, run]
  step:  step, total_steps, loss, acc (of the batch), lr, elapsed_s, eta_s, images_per_s [, run]
  eval:  step, holdout_accuracy [, run]                        (none when nothing is held out)
  end:   status ("completed" | "stopped"), step, elapsed_s, holdout_accuracy (None when nothing was held out),
         holdout_images, message [, run]
"run" is the tag of teach(..., tag=...): teach_both tags its two runs "trained" and "scratch".
Everything is deterministic in the seed (the split, the head's initial weights, every batch and augmentation).
A stop callback is checked before every step; a stopped teach still returns its network, marked "stopped".
"""
from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resnet_demo.base.device import autocast, hardware_name, precision_label, resolve_device, resolve_precision
from resnet_demo.base.seeding import seeded
from resnet_demo.base.storage import atomic_write_bytes, atomic_write_json, sha256_bytes
from resnet_demo.data.cifar import Split
from resnet_demo.data.loader import PAD, channel_stats, normalize
from resnet_demo.nets.classes import ClassNameError, check_names
from resnet_demo.nets.model import Arch, CifarResNet, count_params
from resnet_demo.nets.paper import MEAN, STD
from resnet_demo.store.evaluate import confusion_matrix, per_class_accuracy
from resnet_demo.store.events import Listener
from resnet_demo.store.registry import ModelEntry, classes_label, resolve, shipped_models
from resnet_demo.store.weights import WeightsError, model_bytes

SCRATCH = "scratch"
MAX_STEPS = 5000
MAX_BATCH = 256
MAX_IMAGES = 50_000  # a teach holds its images in memory: 150 MB at 32x32 (the benchmark's 25,000 fit)
# Peak learning rates, chosen by `python -m benchmarks.teach --sweep` on validation images of five CIFAR-10 classes
# (20 taught per class; benchmarks/results-teach-lr-2026-12-06.json): from a trained network 0.02/0.05/0.1 scored
# 74.2/76.3/76.5 %, from random weights 0.05/0.1/0.2 scored 53.5/48.8/44.8 %.
LR_TRAINED = 0.05
LR_SCRATCH = 0.05
WARMUP = 0.05  # fraction of the steps spent warming the learning rate up; cosine decay to 0 after


class TeachError(ValueError):
    """The images or settings cannot be taught; the message says what to change."""


@dataclass(frozen=True)
class TeachConfig:
    """How to teach. `start`: a model name (see `python -m resnet_demo models`), a .safetensors file, SCRATCH
    (random weights, of the architecture `depth`, `plain`, `shortcut`), or None for the shipped ResNet-20."""

    start: str | None = None
    depth: int = 20
    plain: bool = False
    shortcut: str = "A"
    steps: int = 150
    batch_size: int = 64
    lr: float | None = None  # the peak; None: LR_TRAINED from a trained network, LR_SCRATCH from random weights
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    holdout: float = 0.2  # the fraction of each class's images held out to test on (0: none)
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"
    eval_every: int = 25  # steps between held-out scores for a live chart (0: only at the end)

    @property
    def from_scratch(self) -> bool:
        return self.start == SCRATCH

    @property
    def arch(self) -> Arch:
        """The architecture a teach from scratch builds."""
        return Arch(self.depth, self.plain, self.shortcut)

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else LR_SCRATCH if self.from_scratch else LR_TRAINED

    def validate(self) -> TeachConfig:
        """The config itself, or a TeachError naming the first bad setting."""
        checks = [
            (isinstance(self.steps, int) and 1 <= self.steps <= MAX_STEPS, f"steps must be 1 to {MAX_STEPS}"),
            (isinstance(self.batch_size, int) and 1 <= self.batch_size <= MAX_BATCH,
             f"the batch size must be 1 to {MAX_BATCH}"),
            (0 <= self.holdout < 1, "the held-out fraction must be at least 0 and below 1"),
            (self.lr is None or 0 < self.lr <= 1, "the learning rate must be above 0 and at most 1"),
            (0 <= self.weight_decay < 0.1 and 0 <= self.label_smoothing < 1, "weight decay or label smoothing "
                                                                             "out of range"),
            (isinstance(self.eval_every, int) and self.eval_every >= 0, "eval_every must be 0 or more"),
        ]
        for ok, message in checks:
            if not ok:
                raise TeachError(message)
        try:
            Arch(self.depth, self.plain, self.shortcut)  # validates
            resolve_precision(self.precision, resolve_device(self.device))
        except ValueError as e:
            raise TeachError(str(e)) from None
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TeachResult:
    """A taught network and how it did. `holdout`: the indices (into the images taught) it was tested on,
    `holdout_pred`: its answer for each; `record`: what metrics.json holds."""

    model: CifarResNet
    status: str  # "completed" | "stopped"
    record: dict
    holdout: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    holdout_pred: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def accuracy(self) -> float | None:
        return self.record.get("holdout_accuracy")


def split_holdout(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices, sorted: round(fraction x n) of each class's n images held out, at least one
    when fraction > 0 and at most n - 1, chosen at random by the seed."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = 0 if fraction <= 0 else min(len(idx) - 1, max(1, round(fraction * len(idx))))
        held.append(idx[:k])
        train.append(idx[k:])
    join = lambda parts: np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
    return join(train), join(held)


def check_images(data: Split, holdout: float) -> tuple[str, ...]:
    """The class names (checked), or a TeachError: fewer than two classes, a class without images (or with one
    image when some are held out), too many images."""
    try:
        classes = check_names(data.classes)
    except ClassNameError as e:
        raise TeachError(str(e)) from None
    if len(data) > MAX_IMAGES:
        raise TeachError(f"{len(data):,} images is more than the {MAX_IMAGES:,} a teach may hold")
    counts = np.bincount(data.labels, minlength=len(classes))
    need = 2 if holdout > 0 else 1
    for name, n in zip(classes, counts, strict=True):
        if n < need:
            what = "no images" if n == 0 else "only one image"
            why = "; with some held out to test on, each class needs at least two" if n == 1 else ""
            raise TeachError(f"class {name!r} has {what}{why}")
    return classes


def default_start() -> ModelEntry:
    """The shipped ResNet-20 (the smallest shipped residual network knowing CIFAR-10, so the quickest to teach)."""
    shipped = [e for e in shipped_models() if e.is_cifar10 and not e.arch.plain]
    if not shipped:
        raise TeachError("no shipped ResNet to start from (weights/manifest.json lists none); teach from random "
                         "weights instead (start: scratch)")
    return min(shipped, key=lambda e: (e.arch.depth, -(e.test_accuracy or 0)))


def start_model(config: TeachConfig, classes: tuple[str, ...],
                base: CifarResNet | None = None) -> tuple[CifarResNet, str]:
    """(the network to fine-tune, what it started from). From a trained network: its layers, copied (`base` when
    the caller already has it loaded, else config.start), with a new last layer for `classes`; from scratch:
    random weights. The new weights depend only on the seed; the global random state is left alone."""
    if config.from_scratch:
        with seeded(config.seed):
            return CifarResNet(config.arch, classes), SCRATCH
    if base is None:
        try:
            entry = default_start() if config.start is None else resolve(config.start)
            base = entry.load()
        except WeightsError as e:
            raise TeachError(str(e)) from None
        name = entry.name
    else:
        name = config.start or "the given network"
    model = copy.deepcopy(base).cpu().float()
    old = model.fc
    with seeded(config.seed):
        model.fc = nn.Linear(old.in_features, len(classes))
        nn.init.kaiming_uniform_(model.fc.weight, a=5 ** 0.5)
    nn.init.zeros_(model.fc.bias)
    model.classes = classes
    return model, name


class _Batches:
    """Every step's batch, fixed by the seed: the images in a fresh random order each pass, each one cropped at a
    random offset from its 4-pixel zero padding and flipped half the time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, device: torch.device,
                 channels_last: bool):
        self.images = F.pad(torch.from_numpy(np.ascontiguousarray(images)), (0, 0, PAD, PAD, PAD, PAD)).to(device)
        self.labels = torch.from_numpy(labels).to(device)
        self.batch_size, self.device, self.channels_last = batch_size, device, channels_last
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.zeros(0, dtype=torch.int64)
        self.stats = channel_stats(device)
        self.ar = torch.arange(32, device=device)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.labels)
        while len(self.order) < self.batch_size:
            self.order = torch.cat([self.order, torch.randperm(n, generator=self.generator)])
        j, self.order = self.order[:self.batch_size], self.order[self.batch_size:]
        offsets = torch.randint(0, 2 * PAD + 1, (len(j), 2), generator=self.generator).to(self.device)
        flip = (torch.rand(len(j), generator=self.generator) < 0.5).to(self.device)
        j = j.to(self.device)
        rows = offsets[:, :1] + self.ar
        cols = torch.where(flip[:, None], offsets[:, 1:] + 31 - self.ar, offsets[:, 1:] + self.ar)
        batch = self.images[j[:, None, None], rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        x = normalize(batch, stats=self.stats)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt), self.labels[j]


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over WARMUP of the steps (from a tenth of the peak), then cosine decay to 0."""
    warm = max(1, int(WARMUP * total))
    if step < warm:
        return peak * (0.1 + 0.9 * step / warm)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


@torch.inference_mode()
def predict_images(model: nn.Module, images: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Softmax probabilities (N, classes) of uint8 (N, 32, 32, 3) images, in fp32 and eval mode."""
    model.eval()
    stats = channel_stats(device)
    out = []
    for i in range(0, len(images), 250):
        batch = torch.from_numpy(np.ascontiguousarray(images[i:i + 250])).to(device).permute(0, 3, 1, 2)
        out.append(F.softmax(model(normalize(batch, stats=stats)).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(model.fc.bias)), np.float32)


def teach(data: Split, config: TeachConfig = TeachConfig(), listener: Listener | None = None,
          should_stop: Callable[[], bool] | None = None, base: CifarResNet | None = None,
          tag: str | None = None) -> TeachResult:
    """Fine-tune a network on `data` (32x32 uint8 images labelled with data.classes); see the module's docstring.
    `base`: the trained network to start from when the caller has it loaded already (it is copied, never changed);
    `tag`: added to every event as "run". Raises TeachError before any work for bad images or settings."""
    config.validate()
    classes = check_images(data, config.holdout)
    train_idx, held_idx = split_holdout(data.labels, config.holdout, config.seed)
    device = resolve_device(config.device)
    amp = resolve_precision(config.precision, device)
    model, started = start_model(config, classes, base)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    emit = _emitter(listener, tag)
    run = _Run(config, data, train_idx, held_idx, device, amp, model, emit)
    emit({"type": "start", "classes": list(classes), "start": started, "from_scratch": config.from_scratch,
          "label": model.arch.label, "params": count_params(model), "train_images": len(train_idx),
          "holdout_images": len(held_idx), "images_per_class": np.bincount(data.labels).tolist(),
          "total_steps": config.steps, "batch_size": config.batch_size, "lr": config.peak_lr,
          "device": hardware_name(device), "precision": precision_label(amp), "seed": config.seed})
    status = run.loop(should_stop or (lambda: False))
    return run.finish(status, started)


def _emitter(listener: Listener | None, tag: str | None) -> Listener:
    def emit(event: dict) -> None:
        if listener is not None:
            listener(event if tag is None else {**event, "run": tag})
    return emit


class _Run:
    """One teach under way: the loop and the result; teach() is its only user."""

    def __init__(self, config: TeachConfig, data: Split, train_idx: np.ndarray, held_idx: np.ndarray,
                 device: torch.device, amp, model: CifarResNet, emit: Listener):
        self.config, self.data, self.device, self.amp, self.model, self.emit = config, data, device, amp, model, emit
        self.train_idx, self.held_idx = train_idx, held_idx
        self.batches = _Batches(data.images[train_idx], data.labels[train_idx], config.batch_size, config.seed,
                                device, channels_last=True)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=config.peak_lr, momentum=0.9, nesterov=True,
                                         weight_decay=config.weight_decay)
        self.step, self.start_time = 0, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start_time

    def loop(self, should_stop: Callable[[], bool]) -> str:
        total, cfg = self.config.steps, self.config
        while self.step < total:
            if should_stop():
                return "stopped"
            lr = lr_at(self.step, total, cfg.peak_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            x, y = self.batches.next()
            with autocast(self.device, self.amp):
                logits = self.model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise TeachError(f"the loss became {loss_value} at step {self.step}: the learning rate "
                                 f"{cfg.peak_lr} is too high for these images; try a lower one")
            elapsed = self.elapsed()
            self.emit({"type": "step", "step": self.step, "total_steps": total, "loss": loss_value,
                       "acc": float((logits.argmax(1) == y).float().mean()), "lr": lr, "elapsed_s": elapsed,
                       "eta_s": elapsed / self.step * (total - self.step),
                       "images_per_s": self.step * cfg.batch_size / max(elapsed, 1e-9)})
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < total and len(self.held_idx):
                self.emit({"type": "eval", "step": self.step, "holdout_accuracy": self.holdout_score()[0]})
                self.model.train()
        return "completed"

    def holdout_score(self) -> tuple[float | None, np.ndarray]:
        """(accuracy on the held-out images, the network's answer for each)."""
        if not len(self.held_idx):
            return None, np.zeros(0, np.int64)
        pred = predict_images(self.model, self.data.images[self.held_idx], self.device).argmax(1)
        return float((pred == self.data.labels[self.held_idx]).mean()), pred.astype(np.int64)

    def finish(self, status: str, started: str) -> TeachResult:
        model = self.model.to(memory_format=torch.contiguous_format).eval()
        accuracy, pred = self.holdout_score()
        elapsed = self.elapsed()
        record = _record(self, started, status, accuracy, pred, elapsed)
        self.emit({"type": "end", "status": status, "step": self.step, "elapsed_s": elapsed,
                   "holdout_accuracy": accuracy, "holdout_images": len(self.held_idx),
                   "message": _end_message(status, self.step, accuracy, len(self.held_idx), elapsed)})
        return TeachResult(model.cpu(), status, record, self.held_idx, pred)


def _record(run: _Run, started: str, status: str, accuracy: float | None, pred: np.ndarray, elapsed: float) -> dict:
    """What metrics.json holds: the registry reads it like a finished run's (architecture, classes, accuracy)."""
    model, cfg, classes = run.model, run.config, run.model.classes
    confusion = confusion_matrix(pred, run.data.labels[run.held_idx], len(classes)) if len(run.held_idx) else None
    return {
        **model.arch.to_dict(), "name": model.arch.name,
        "label": f"{model.arch.label} · {classes_label(classes)}", "params": count_params(model),
        "normalization": {"mean": list(MEAN), "std": list(STD)}, "classes": list(classes),
        "taught_from": started, "status": status, "steps": run.step, "config": cfg.to_dict(),
        "train_images": len(run.train_idx), "holdout_images": len(run.held_idx),
        "images_per_class": np.bincount(run.data.labels, minlength=len(classes)).tolist(),
        "holdout_accuracy": accuracy, "test_accuracy": accuracy,  # the registry's name for the accuracy it shows
        "per_class": None if confusion is None else per_class_accuracy(confusion, classes),
        "confusion": None if confusion is None else confusion.tolist(),  # rows: true class, columns: predicted
        "wall_time_s": round(elapsed, 2), "precision": precision_label(run.amp),
        "hardware": hardware_name(run.device), "torch": torch.__version__,
    }


def _end_message(status: str, step: int, accuracy: float | None, held: int, elapsed: float) -> str:
    score = ("nothing held out to test on" if accuracy is None else
             f"{100 * accuracy:.1f}% right on {held} held-out image{'s' if held != 1 else ''}")
    verb = "taught" if status == "completed" else f"stopped after step {step}"
    return f"{verb} in {elapsed:.1f} s: {score}"


def teach_both(data: Split, config: TeachConfig = TeachConfig(), listener: Listener | None = None,
               should_stop: Callable[[], bool] | None = None,
               base: CifarResNet | None = None) -> dict[str, TeachResult]:
    """The same images taught twice, from the trained network (`config.start`, tagged "trained") and from random
    weights of the same architecture ("scratch"), with the same held-out images, seed and steps: what starting
    from a trained network is worth. A stop ends the pair; the result then holds the runs begun."""
    if config.from_scratch:
        raise TeachError("the comparison starts once from a trained network and once from scratch; choose a "
                         "trained network to start from")
    results = {"trained": teach(data, config, listener, should_stop, base, tag="trained")}
    if results["trained"].status == "completed":
        arch = results["trained"].model.arch
        scratch = replace(config, start=SCRATCH, depth=arch.depth, plain=arch.plain, shortcut=arch.shortcut)
        results["scratch"] = teach(data, scratch, listener, should_stop, tag="scratch")
    return results


def result_bytes(result: TeachResult) -> bytes:
    """The taught network as a model file's bytes (what save_result writes, and a project file holds)."""
    return model_bytes(result.model, result.model.arch, extra={"taught_from": result.record["taught_from"]})


def save_result(result: TeachResult, out: str | os.PathLike) -> dict:
    """Write OUT/model.safetensors, then OUT/metrics.json last (each atomically; metrics.json's presence marks a
    finished teach, as it does a run: the registry lists it as run:<folder name>). A previous teach's metrics.json
    there goes first, so no reader ever pairs the old record with the new model. Returns the record written."""
    out = Path(out)
    data = result_bytes(result)
    (out / "metrics.json").unlink(missing_ok=True)
    atomic_write_bytes(out / "model.safetensors", data)
    record = {**result.record, "file": "model.safetensors", "sha256": sha256_bytes(data)}
    atomic_write_json(out / "metrics.json", record)
    return record
