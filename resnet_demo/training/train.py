"""The training engine: one loop for CPU, one GPU, or several under torchrun (DDP).

It reports progress as events (see events.py), checks a stop request every step, writes a resumable
checkpoint every epoch (also mid-epoch, and on stop), and ends every failure with a TrainingError whose message
a person can act on. The last good checkpoint is never overwritten by a bad state.

Read it top to bottom: train() prepares and guards a run (_prepare() checks the settings and reads the data before
anything is written); _setup() builds it (model, optimiser, the checkpoint it resumes); _loop() runs the epochs,
each batch through the run's `step` (one optimisation step, chosen in _setup: eager, or on a GPU the whole step
replayed as a CUDA graph, graph_step.py) and _after_step() (bookkeeping, progress, mid-epoch checkpoints);
_end_epoch() evaluates (every --eval-every epochs), reports and checkpoints (the file written on a background
thread, checkpoint.CheckpointWriter); _finish() evaluates the final weights and writes the record.

Run folder (`out`): config.json, events.jsonl, checkpoint.safetensors; when finished also
model.safetensors, preds.npz and metrics.json (metrics.json last: its presence marks a finished run).
"""
from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from resnet_demo.base import faults
from resnet_demo.base.device import autocast, hardware_name, precision_label, resolve_device, resolve_precision
from resnet_demo.base.seeding import seeded
from resnet_demo.base.storage import StorageError, atomic_write_json, remove_temp_files
from resnet_demo.data.cifar import Cifar10, DataError, stratified_subset
from resnet_demo.data.loader import DeviceLoader, eval_batch_size
from resnet_demo.nets.model import CifarResNet, count_params
from resnet_demo.nets.paper import CLASSES, MEAN, STD
from resnet_demo.store.evaluate import evaluate, save_predictions
from resnet_demo.store.events import EventLog, Listener, broadcast, iter_type, latest_run, read_events
from resnet_demo.store.weights import WeightsError, save_model
from resnet_demo.training import checkpoint as ckpt
from resnet_demo.training import distributed
from resnet_demo.training.config import TrainConfig
from resnet_demo.training.distributed import World, all_sum
from resnet_demo.training.graph_step import Step, make_step
from resnet_demo.training.recipes import WARMUP_110, Recipe, get_recipe
from resnet_demo.training.sources import data_record, load_for_training

STOP_FILE = "STOP"
EMIT_EVERY_S = 0.5  # step events: often enough for a live chart, rare enough to cost nothing


class TrainingError(RuntimeError):
    """The run ended early for a reason a person can fix; the message says which and what was kept."""


class StopRequest:
    """True once a signal arrived or a STOP file appeared in the run folder; checked every step."""

    def __init__(self, out: Path, extra: Callable[[], bool] | None = None):
        self.file = out / STOP_FILE
        self.flag = False
        self.extra = extra

    def __call__(self) -> bool:
        if not self.flag and (self.file.exists() or (self.extra is not None and self.extra())):
            self.flag = True
        return self.flag


class EagerStep:
    """The plain PyTorch step: every kernel launched from Python, every batch."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, recipe: Recipe, amp):
        self.model, self.optimizer, self.recipe, self.amp = model, optimizer, recipe, amp

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        with self.amp():
            logits = self.model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.recipe.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), (logits.argmax(1) == y).sum()


@dataclass
class Clock:
    """Wall time of the run across resumes, and the smoothed step time behind the ETA."""

    before: float = 0.0               # seconds trained before this process resumed the run
    started: float = field(default_factory=time.time)
    last_emit: float = field(default_factory=time.time)
    last_emit_step: int = 0
    last_save: float = field(default_factory=time.time)
    step_time: float | None = None    # seconds per step, smoothed
    eval_time: float = 0.0            # seconds of the last per-epoch evaluation

    def elapsed(self) -> float:
        return self.before + time.time() - self.started


@dataclass
class Run:
    """One training run while it trains: what _setup built, and where the loop stands."""

    cfg: TrainConfig
    recipe: Recipe
    world: World
    device: torch.device
    out: Path
    emit: Listener
    stop: Callable[[], bool]
    data: Cifar10
    loader: DeviceLoader
    test_loader: DeviceLoader
    raw: CifarResNet                  # the model itself; `model` may wrap it (DDP, torch.compile)
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    amp_dtype: torch.dtype | None
    state: dict                       # the loop position, as the checkpoint holds it
    step_fn: Step = None
    step_path: str = "eager"          # which step runs: "cuda-graph", "eager", ... (graph_step.make_step)
    step_fallback: str | None = None  # why not the CUDA graph, where it was asked for or is the default
    step: int = 0
    sums: torch.Tensor = None         # this epoch's loss sum, correct, count
    clock: Clock = field(default_factory=Clock)
    writer: ckpt.CheckpointWriter = field(default_factory=ckpt.CheckpointWriter)  # checkpoints, off this thread

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.recipe.epochs

    def amp(self):
        return autocast(self.device, self.amp_dtype)


FAILURES = (DataError, WeightsError, StorageError, ValueError, TrainingError, torch.cuda.OutOfMemoryError,
            KeyboardInterrupt)


def train(cfg: TrainConfig, listener: Listener | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    """Train as configured; returns the final record (metrics.json) or the 'end' event of a stopped run."""
    t0 = time.time()
    cfg, recipe, device, world, data = _prepare(cfg)
    faults.point("startup")
    out = Path(cfg.out)
    if world.is_main and not (out / ckpt.FILENAME).is_file():
        (out / "events.jsonl").unlink(missing_ok=True)  # a fresh run (or a resume of none) gets a fresh history
    if world.is_main:
        (out / STOP_FILE).unlink(missing_ok=True)  # left by the stop we resume from; it asked that run, not this
        remove_temp_files(out)  # what a kill in the middle of a save left behind
    emit = broadcast([EventLog(out / "events.jsonl"), listener] if world.is_main else [])
    stop = distributed.agreed(StopRequest(out, should_stop), device, world)
    run = None
    try:
        run = _setup(cfg, recipe, device, world, data, emit, stop)
        result = _loop(run)
        distributed.leave(world)
        return result
    except FAILURES as e:
        msg = _failure_message(e, recipe, out)
        if run is not None:
            msg = _settle_writer(run, msg)
    if world.is_main:
        emit({"type": "end", "status": "failed", "message": msg, "elapsed_s": time.time() - t0,
              "step": run.step if run else 0})
    raise TrainingError(msg)


def _prepare(cfg: TrainConfig) -> tuple[TrainConfig, Recipe, torch.device, World, Cifar10]:
    """The settings checked and completed, and the data read, before anything in the run folder is touched: a run
    refused, or without data, leaves no run folder behind."""
    out = Path(cfg.out)
    try:
        if cfg.resume and (out / ckpt.FILENAME).is_file():
            cfg = cfg.with_schedule_of(_saved_config(out))
        cfg.validate()
        device = resolve_device(cfg.device)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    try:
        data = load_for_training(cfg.data_dir, cfg.preset, cfg.subset, cfg.download)
    except DataError as e:
        raise TrainingError(str(e)) from None
    world, device = distributed.join(device)
    n_train = min(cfg.subset or len(data.train), len(data.train))
    recipe = get_recipe(cfg.preset, device.type, cfg.epochs, cfg.batch_size, cfg.lr, depth=cfg.depth,
                        train_images=n_train)
    if recipe.batch_size % world.size:
        raise TrainingError(f"batch size {recipe.batch_size} does not split evenly over {world.size} processes")
    if not cfg.resume and (out / ckpt.FILENAME).exists():
        raise TrainingError(f"{out} already holds a training run's checkpoint; continue it with --resume, "
                            f"or choose another --out (nothing was overwritten)")
    return cfg, recipe, device, world, data


def _saved_config(out: Path) -> dict:
    try:
        return ckpt.read_state(out / ckpt.FILENAME).get("config", {})
    except WeightsError:
        return {}  # reported where the checkpoint is loaded, inside the run's error handling


def _settle_writer(run: Run, msg: str) -> str:
    """A failed run still waits for the checkpoint being written (so "the last good checkpoint is kept" holds
    when the failure is reported); that write's own failure, if any, is added to the message."""
    try:
        _written(run, run.writer.wait())
    except FAILURES as e:
        return f"{msg}; also: {_failure_message(e, run.recipe, run.out)}"
    return msg


def _failure_message(e: BaseException, recipe: Recipe, out: Path) -> str:
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return (f"CUDA ran out of memory at batch size {recipe.batch_size}; try --batch-size "
                f"{max(16, recipe.batch_size // 2)}. The last good checkpoint in {out} is kept.")
    if isinstance(e, KeyboardInterrupt):
        return "interrupted; the last good checkpoint is kept"
    return str(e)


# ---------------------------------------------------------------- setup


def _setup(cfg: TrainConfig, recipe: Recipe, device: torch.device, world: World, data: Cifar10, emit: Listener,
           stop: Callable[[], bool]) -> Run:
    out = Path(cfg.out)
    saved = _saved_config(out) if cfg.resume and (out / ckpt.FILENAME).is_file() else {}
    cfg.check_resume(saved, recipe)
    train_split = stratified_subset(data.train, cfg.subset, cfg.seed) if cfg.subset else data.train
    test_curve = stratified_subset(data.test, cfg.test_subset, cfg.seed) if cfg.test_subset else data.test
    if len(train_split) < recipe.batch_size:
        raise TrainingError(f"only {len(train_split)} training images for a batch of {recipe.batch_size}; "
                            f"use a larger --subset or a smaller --batch-size")
    # channels_last suits cuDNN and oneDNN alike (1.5x for fp32 ResNet-20 on the CPU, BENCHMARKS.md).
    loader = DeviceLoader(train_split, recipe.batch_size // world.size, device, train=True, seed=cfg.seed,
                          rank=world.rank, world_size=world.size, channels_last=True)
    test_loader = DeviceLoader(test_curve, eval_batch_size(device), device, train=False, rank=world.rank,
                               world_size=world.size, channels_last=True)
    with seeded(cfg.seed):
        raw = CifarResNet(cfg.arch)
    raw = raw.to(device).to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    optimizer = torch.optim.SGD(raw.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                                weight_decay=recipe.weight_decay)
    model = distributed.wrap(raw, device, world)
    run = Run(cfg, recipe, world, device, out, emit, stop, data, loader, test_loader, raw,
              torch.compile(model) if cfg.compile else model, optimizer, resolve_precision(cfg.precision, device),
              state=_restore(cfg, raw, optimizer, out))
    run.state["config"] = cfg.checkpoint_record(recipe)
    run.step = run.state["step"]
    run.sums = torch.tensor(run.state["sums"], dtype=torch.float64, device=device)
    run.step_fn, run.step_path, run.step_fallback = make_step(
        cfg.step, EagerStep(run.model, optimizer, recipe, run.amp), run.model, optimizer, recipe, run.amp_dtype,
        recipe.batch_size // world.size, device, world.size, cfg.compile)
    if run.step_fallback and world.is_main:
        print(f"training step: {run.step_path} ({run.step_fallback})", file=sys.stderr)
    _announce(run, len(train_split), len(test_curve))
    return run


def _restore(cfg: TrainConfig, raw: CifarResNet, optimizer: torch.optim.Optimizer, out: Path) -> dict:
    """The loop position: a fresh run's, or the checkpoint's (whose weights and momentum are loaded in place)."""
    path = out / ckpt.FILENAME
    if cfg.resume and path.is_file():
        return ckpt.load_checkpoint(path, raw, optimizer)
    if cfg.resume:
        print(f"--resume: no checkpoint in {out} yet, starting from scratch", file=sys.stderr)
    warm_done = cfg.depth < WARMUP_110["min_depth"] or cfg.preset != "paper"
    return {"epoch": 0, "batch": 0, "step": 0, "elapsed_s": 0.0, "warm_done": warm_done, "sums": [0.0, 0.0, 0.0]}


def _announce(run: Run, train_images: int, test_images: int) -> None:
    """config.json, then the start event: what this run (or this part of a resumed run) is."""
    record = {**run.cfg.to_json(), "recipe": run.recipe.to_dict(), "precision_used": precision_label(run.amp_dtype),
              "data": data_record(run.data)}
    if run.world.is_main:
        atomic_write_json(run.out / "config.json", record)
    resumed = run.step if run.cfg.resume and (run.out / ckpt.FILENAME).is_file() else None
    run.emit({"type": "start", "config": record, "arch": run.cfg.arch.to_dict(), "label": run.cfg.arch.label,
              "params": count_params(run.raw), "total_steps": run.total_steps, "steps_per_epoch": run.steps_per_epoch,
              "epochs": run.recipe.epochs, "batch_size": run.recipe.batch_size, "train_images": train_images,
              "test_images": test_images, "device": hardware_name(run.device, run.world.size),
              "world_size": run.world.size, "resumed_from_step": resumed, "step_path": run.step_path,
              "step_fallback": run.step_fallback, "time": time.time()})


# ---------------------------------------------------------------- the loop


def _loop(run: Run) -> dict:
    first_epoch, first_batch = run.state["epoch"], run.state["batch"]
    run.clock = Clock(before=run.state["elapsed_s"], last_emit_step=run.step)
    run.model.train()
    for epoch in range(first_epoch, run.recipe.epochs):
        start = first_batch if epoch == first_epoch else 0
        if start == 0:
            run.sums.zero_()
        for batch, (x, y) in enumerate(run.loader.epoch(epoch, start), start=start):
            if run.stop():
                return _stopped(run, epoch, batch)
            lr = _lr(run)
            loss, correct = run.step_fn(x, y, lr)
            run.step += 1
            faults.point("step")
            _after_step(run, epoch, batch, lr, loss, correct, len(y))
        if run.stop():  # before the evaluation, so a stop never waits for it; a resume starts with it
            return _stopped(run, epoch, run.steps_per_epoch)
        _end_epoch(run, epoch)
    return _finish(run) if run.world.is_main else {"step": run.step}


def _lr(run: Run) -> float:
    """The schedule's lr at this step; the paper's depth-110 warm-up holds it at 0.01 until training gets going."""
    return run.recipe.lr_at(run.step, run.total_steps) if run.state["warm_done"] else WARMUP_110["lr"]


def _after_step(run: Run, epoch: int, batch: int, lr: float, loss: torch.Tensor, correct: torch.Tensor,
                n: int) -> None:
    with torch.no_grad():
        run.sums[0] += loss.double() * n
        run.sums[1] += correct
        run.sums[2] += n
    if not run.state["warm_done"]:  # depth-110 warm-up: leave it once training error < 80% over 20 steps
        errors = run.state.setdefault("warm_errors", [])
        errors.append(1.0 - correct.item() / n)
        run.state["warm_done"] = len(errors) >= 20 and sum(errors[-20:]) / 20 < WARMUP_110["until_train_error"]
    if run.writer.busy:
        _written(run, run.writer.poll())  # a background checkpoint write that ended: say so, or raise its error
    now = time.time()
    if run.world.is_main and (now - run.clock.last_emit >= EMIT_EVERY_S or batch == run.steps_per_epoch - 1):
        _emit_step(run, now, lr, loss.item(), correct.item() / n)
    # A mid-epoch checkpoint for long epochs (110 layers on a CPU: ~20 min): a kill (the machine going away,
    # SIGKILL) then costs minutes, not the epoch. The epoch's last step is saved after its evaluation.
    minutes = run.cfg.checkpoint_minutes
    if minutes and now - run.clock.last_save >= 60 * minutes and batch < run.steps_per_epoch - 1:
        if run.world.is_main:
            _check_finite(run, run.sums[0].item())
        _save(run, epoch, batch + 1)


def _emit_step(run: Run, now: float, lr: float, loss: float, acc: float) -> None:
    _check_finite(run, loss)
    clock = run.clock
    per_step = (now - clock.last_emit) / max(1, run.step - clock.last_emit_step)
    clock.step_time = per_step if clock.step_time is None else 0.7 * clock.step_time + 0.3 * per_step
    run.emit({"type": "step", "step": run.step, "epoch": run.step / run.steps_per_epoch, "loss": loss, "acc": acc,
              "lr": lr, "images_per_s": run.recipe.batch_size / per_step, "eta_s": _eta(run),
              "elapsed_s": clock.elapsed(), "total_steps": run.total_steps})
    clock.last_emit, clock.last_emit_step = now, run.step


def _eta(run: Run) -> float | None:
    if run.clock.step_time is None:
        return None
    evals_left = sum(_evaluates(run, e) for e in range(run.step // run.steps_per_epoch, run.recipe.epochs))
    return (run.total_steps - run.step) * run.clock.step_time + evals_left * run.clock.eval_time


def _check_finite(run: Run, value: float, what: str = "loss") -> None:
    if not math.isfinite(value):
        raise TrainingError(f"the {what} became {value} at step {run.step} "
                            f"(epoch {run.step / run.steps_per_epoch:.2f}); "
                            f"training diverged. Try a lower --lr. The last good checkpoint in {run.out} is kept.")


# ---------------------------------------------------------------- end of an epoch, checkpoints, stop


def _evaluates(run: Run, epoch: int) -> bool:
    """Whether the test curve is evaluated after this epoch (0-based): every --eval-every epochs, never with 0
    (the final evaluation of the finished run stays)."""
    every = run.cfg.eval_every
    return every > 0 and (epoch + 1) % every == 0


def _end_epoch(run: Run, epoch: int) -> None:
    t_eval = time.time()
    totals = all_sum(run.sums.clone(), run.world).tolist()
    train_loss, train_acc = totals[0] / max(1, totals[2]), totals[1] / max(1, totals[2])
    _check_finite(run, train_loss)
    test_loss, test_acc = _test_metrics(run) if _evaluates(run, epoch) else (None, None)
    if test_acc is not None:
        run.clock.eval_time = time.time() - t_eval
    run.clock.last_emit = time.time()  # the evaluation is not training time for the throughput figure
    run.emit({"type": "epoch", "epoch": epoch + 1, "step": run.step, "train_loss": train_loss, "train_acc": train_acc,
              "test_loss": test_loss, "test_acc": test_acc, "lr": run.recipe.lr_at(run.step - 1, run.total_steps),
              "elapsed_s": run.clock.elapsed(), "eta_s": _eta(run)})
    run.sums.zero_()
    _save(run, epoch + 1, 0)


@torch.no_grad()
def _test_metrics(run: Run) -> tuple[float, float]:
    """Loss and accuracy on the test curve's images, in the training precision (the final figures are fp32)."""
    run.model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=run.device)
    for x, y in run.test_loader.epoch():
        faults.point("epoch-evaluation")
        with run.amp():
            logits = run.model(x)
        sums[0] += F.cross_entropy(logits.float(), y, reduction="sum")
        sums[1] += (logits.argmax(1) == y).sum()
        sums[2] += len(y)
    all_sum(sums, run.world)
    run.model.train()
    n = max(1.0, sums[2].item())
    return sums[0].item() / n, sums[1].item() / n


def weights_magnitude(params) -> float:
    """The sum of the weights' magnitudes, in one fused reduction and one read (not one per tensor): inf or nan
    as soon as any weight is."""
    params = [p.detach() for p in params]
    return torch.stack(torch._foreach_norm(params, 1)).sum().item() if params else 0.0


def _save(run: Run, epoch: int, batch: int) -> None:
    """Checkpoint the run at (epoch, batch); rank 0 writes it, every rank restarts its checkpoint clock.

    The state is copied here; the file is written on a background thread (CheckpointWriter), and its
    'checkpoint' event is emitted once it is on disk, by whichever of _after_step, the next _save, _stopped or
    _finish sees the write done first."""
    run.clock.last_save = time.time()
    if not run.world.is_main:
        return
    # a finite loss can still be followed by a step that made the weights inf: never checkpoint those
    _check_finite(run, weights_magnitude(run.raw.parameters()), "sum of the weights' magnitudes")
    run.state.update(epoch=epoch, batch=batch, step=run.step, elapsed_s=run.clock.elapsed(), sums=run.sums.tolist(),
                     warm_errors=run.state.get("warm_errors", [])[-20:])
    path = run.out / ckpt.FILENAME
    _written(run, run.writer.wait())  # one write at a time, in order
    snap = ckpt.snapshot(run.raw, run.optimizer, run.state)
    run.writer.submit(path, snap, {"type": "checkpoint", "epoch": epoch, "batch": batch, "step": run.step,
                                   "path": str(path)})


def _written(run: Run, event: dict | None) -> None:
    """The 'checkpoint' event of a write now on disk (None: nothing finished)."""
    if event is not None:
        run.emit(event)


def _stopped(run: Run, epoch: int, batch: int) -> dict:
    _check_finite(run, all_sum(run.sums[:1].clone(), run.world).item())  # the loss is only checked now and then
    _save(run, epoch, batch)
    _written(run, run.writer.wait())
    end = {"type": "end", "status": "stopped", "step": run.step, "elapsed_s": run.clock.elapsed(),
           "message": f"stopped at step {run.step}; resume with --resume --out {run.out}"}
    run.emit(end)
    return end


# ---------------------------------------------------------------- the finished run


def _finish(run: Run) -> dict:
    """Final single-view evaluation on the whole test set; weights, predictions, then metrics.json last."""
    wall, arch, test = run.clock.elapsed(), run.cfg.arch, run.data.test
    _written(run, run.writer.wait())  # the last checkpoint: on disk, and its event out, before the final phase
    run.emit({"type": "phase", "phase": "final_evaluation", "step": run.step, "test_images": len(test)})
    result = evaluate(run.raw, test, run.device, flip_tta=run.cfg.flip_tta)
    sha = save_model(run.out / "model.safetensors", run.raw, arch)
    save_predictions(run.out / "preds.npz", result["probs"], test.labels)
    record = {
        **arch.to_dict(), "name": arch.name, "label": arch.label, "params": count_params(run.raw),
        "normalization": {"mean": list(MEAN), "std": list(STD)}, "classes": list(CLASSES),
        "recipe": run.recipe.to_dict(), "preset": run.cfg.preset, "epochs": run.recipe.epochs, "seed": run.cfg.seed,
        "subset": run.cfg.subset, "data": data_record(run.data), "command": run.cfg.command,
        "wall_time_s": round(wall, 1), "steps": run.step,
        "hardware": across_run(run.out, lambda e: e.get("device")) or hardware_name(run.device, run.world.size),
        "torch": torch.__version__,
        "step_path": across_run(run.out, lambda e: e.get("step_path")) or "eager",
        "step_fallback": next((e.get("step_fallback") for e in reversed(_starts(run.out))), None),
        "precision": across_run(run.out, lambda e: e.get("config", {}).get("precision_used"))
        or precision_label(run.amp_dtype),
        "test_accuracy": result["accuracy"], "test_loss": result["loss"], "test_images": result["n"],
        "per_class": result["per_class"], "confusion": result["confusion"],
        "file": "model.safetensors", "sha256": sha, "history": "events.jsonl", "predictions": "preds.npz",
    }
    if "accuracy_flip_tta" in result:
        record["test_accuracy_flip_tta"] = result["accuracy_flip_tta"]
    atomic_write_json(run.out / "metrics.json", record)
    builtin = record["data"]["kind"] == "builtin"
    run.emit({"type": "end", "status": "completed", "step": run.step, "elapsed_s": wall,
              "test_accuracy": result["accuracy"], "test_images": result["n"], "data": record["data"]["kind"],
              "message": f"finished: test accuracy {100 * result['accuracy']:.2f}% on {result['n']:,} "
                         f"{'built-in ' if builtin else ''}test images ({arch.label})"})
    return record


def across_run(out: Path, field: Callable[[dict], str | None]) -> str:
    """What the run's starts said of one field, in order, a value repeated by consecutive starts once ("A then
    B then A"): a long run resumed on other machines may have trained in bf16, then fp32, then bf16 again, and
    its record says so rather than suggest it ended in fp32."""
    return " then ".join(v for v, _ in itertools.groupby(v for v in map(field, _starts(out)) if v))


def _starts(out: Path) -> list[dict]:
    return list(iter_type(latest_run(read_events(out / "events.jsonl")), "start"))
