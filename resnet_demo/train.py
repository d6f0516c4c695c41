"""The training engine: one loop for CPU, one GPU, or several under torchrun (DDP).

It reports progress as events (see events.py), checks a stop request every step, writes a resumable
checkpoint every epoch (and on stop), and ends every failure with a TrainingError whose message a person
can act on. The last good checkpoint is never overwritten by a bad state.

Run folder (`out`): config.json, events.jsonl, checkpoint.safetensors; when finished also
model.safetensors, preds.npz and metrics.json (metrics.json last: its presence marks a finished run).
"""
from __future__ import annotations

import itertools
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .data import Cifar10, DataError, DeviceLoader, eval_batch_size, stratified_subset
from .evaluate import evaluate, predictions_arrays
from .events import EventLog, Listener, broadcast, iter_type, latest_run, read_events
from .model import Arch, CifarResNet, count_params
from .paper import CLASSES, MEAN, STD
from .recipes import WARMUP_110, Recipe, get_recipe
from .sources import data_record, load_for_training
from .storage import StorageError, atomic_write_json
from .weights import WeightsError, save_model, save_predictions

STOP_FILE = "STOP"


class TrainingError(RuntimeError):
    """The run ended early for a reason a person can fix; the message says which and what was kept."""


@dataclass
class TrainConfig:
    depth: int = 20
    plain: bool = False
    shortcut: str = "A"
    preset: str = "classroom"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    subset: int | None = None        # stratified subset of the training images (quick CPU runs)
    test_subset: int | None = None   # stratified subset of the test images for the per-epoch curve
    device: str = "auto"             # "auto" | "cpu" | "cuda" | "cuda:N"
    seed: int = 0
    compile: bool = False
    precision: str = "auto"          # "auto" | "bf16" | "fp32": see resolve_precision
    data_dir: str | None = None
    out: str = "runs/latest"
    resume: bool = False
    download: bool | None = None
    flip_tta: bool = False
    checkpoint_minutes: float = 10.0  # also checkpoint mid-epoch this often, so a killed run loses at most this much
    command: str | None = None       # recorded in metrics.json for reproducibility

    @property
    def arch(self) -> Arch:
        return Arch(self.depth, self.plain, self.shortcut)


# With the step, these fix where a run stands in its lr schedule; a resume must keep them (checkpoint.config).
SCHEDULE_KEYS = ("epochs", "batch_size", "lr")


def _resume_settings(cfg: TrainConfig, out: Path) -> TrainConfig:
    """On --resume, `cfg` with the schedule settings it leaves open taken from the checkpoint.

    So `--resume` alone continues a 100-epoch run as it was: without it the preset's 40 epochs would put the step
    at another point of a shorter schedule (and "finish" a checkpoint past epoch 40 at once), and on a GPU the
    fast preset's doubled batch would do the same.
    """
    path = out / ckpt.FILENAME
    if not (cfg.resume and path.is_file()):
        return cfg
    try:
        saved = ckpt.read_state(path).get("config", {})
    except WeightsError:
        return cfg  # reported where the checkpoint is loaded, inside the run's error handling
    return replace(cfg, **{k: saved[k] for k in SCHEDULE_KEYS if getattr(cfg, k) is None and saved.get(k) is not None})


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu (or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise TrainingError(f"unsupported device {name!r}: use cpu, cuda or auto")
    return dev


PRECISIONS = ("auto", "bf16", "fp32")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: there oneDNN runs bf16 convolutions natively (2.4x fp32 for ResNet-20 on a Zen 4
    EPYC, BENCHMARKS.md); elsewhere bf16 is emulated and slower than fp32."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        try:
            if getattr(cpu, probe)():
                return True
        except Exception:  # a private probe: absent or failing on some builds means "not known to be native"
            pass
    return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training, None for plain fp32. "auto": bf16 on CUDA and on CPUs with native bf16.
    Weights, optimiser state and the final evaluation stay fp32 either way."""
    if precision not in PRECISIONS:
        raise TrainingError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16" or device.type == "cuda" or cpu_has_native_bf16():
        return torch.bfloat16
    return None


def precision_label(amp_dtype: torch.dtype | None) -> str:
    return "bf16 autocast" if amp_dtype == torch.bfloat16 else "fp32"


def hardware_name(device: torch.device, world_size: int = 1) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), name)
        except OSError:
            pass
        name = f"{name}, {torch.get_num_threads()} threads"
    return f"{world_size} x {name}" if world_size > 1 else name


def across_run(out: Path, field: Callable[[dict], str | None]) -> str:
    """What the run's starts said of one field, in order, a value repeated by consecutive starts once ("A then
    B then A"): a long run resumed on other machines (park) may have trained in bf16, then fp32, then bf16
    again, and its record says so rather than suggest it ended in fp32."""
    starts = iter_type(latest_run(read_events(out / "events.jsonl")), "start")
    return " then ".join(v for v, _ in itertools.groupby(v for v in map(field, starts) if v))


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


def _agreed(stop: Callable[[], bool], device: torch.device) -> Callable[[], bool]:
    """Under DDP a rank that sees the STOP file (or a signal) a step before the others would leave them waiting
    in the next gradient all-reduce: every rank stops when any rank asks."""
    import torch.distributed as dist

    def any_rank() -> bool:
        flag = torch.tensor([1.0 if stop() else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    return any_rank


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _all_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


@torch.no_grad()
def _test_metrics(model, loader: DeviceLoader, world: int, autocast) -> tuple[float, float]:
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=loader.device)
    for x, y in loader.epoch():
        with autocast():
            logits = model(x)
        sums[0] += F.cross_entropy(logits.float(), y, reduction="sum")
        sums[1] += (logits.argmax(1) == y).sum()
        sums[2] += len(y)
    _all_sum(sums, world)
    model.train()
    n = max(1.0, sums[2].item())
    return sums[0].item() / n, sums[1].item() / n


def train(cfg: TrainConfig, listener: Listener | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    """Train as configured; returns the final record (metrics.json) or the 'end' event of a stopped run."""
    rank, world, local_rank = _dist_info()
    out = Path(cfg.out)
    arch = cfg.arch  # validates depth and shortcut
    device = resolve_device(cfg.device)
    owns_group = False  # a process group a caller set up is the caller's to destroy
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            owns_group = True
    cfg = _resume_settings(cfg, out)
    try:  # before anything is written: a run without data leaves no run folder behind
        data = load_for_training(cfg.data_dir, cfg.preset, cfg.subset, cfg.download)
    except DataError as e:
        raise TrainingError(str(e)) from None
    n_train = min(cfg.subset or len(data.train), len(data.train))
    recipe = get_recipe(cfg.preset, device.type, cfg.epochs, cfg.batch_size, cfg.lr, train_images=n_train)
    if recipe.batch_size % world:
        raise TrainingError(f"batch size {recipe.batch_size} does not split evenly over {world} processes")

    is_main = rank == 0
    if not cfg.resume and (out / ckpt.FILENAME).exists():
        raise TrainingError(f"{out} already holds a training run's checkpoint; continue it with --resume, "
                            f"or choose another --out (nothing was overwritten)")
    if is_main and not cfg.resume:
        (out / "events.jsonl").unlink(missing_ok=True)  # a fresh run gets a fresh history
    if is_main:
        (out / STOP_FILE).unlink(missing_ok=True)  # left by the stop we resume from; it asked that run, not this
    log = EventLog(out / "events.jsonl") if is_main else None
    emit = broadcast([log, listener] if is_main else [])
    stop = StopRequest(out, should_stop)
    if world > 1:
        stop = _agreed(stop, device)
    t0 = time.time()
    step = 0
    try:
        result = _run(cfg, arch, recipe, data, device, rank, world, out, emit, stop, t0)
        step = result.get("step", 0)
        if world > 1:  # every rank waits for rank 0's final evaluation, then leaves: exiting early aborted gloo
            dist.barrier()
            if owns_group:
                dist.destroy_process_group()
        return result
    except (DataError, WeightsError, StorageError, ValueError) as e:
        msg = str(e)
    except torch.cuda.OutOfMemoryError:
        msg = (f"CUDA ran out of memory at batch size {recipe.batch_size}; try --batch-size "
               f"{max(16, recipe.batch_size // 2)}. The last good checkpoint in {out} is kept.")
    except TrainingError as e:
        msg = str(e)
    except KeyboardInterrupt:
        msg = "interrupted; the last good checkpoint is kept"
    if is_main:
        emit({"type": "end", "status": "failed", "message": msg, "elapsed_s": time.time() - t0, "step": step})
    raise TrainingError(msg)


def _run(cfg: TrainConfig, arch: Arch, recipe: Recipe, data: Cifar10, device: torch.device, rank: int, world: int,
         out: Path, emit: Listener, stop: StopRequest, t0: float) -> dict:
    is_main = rank == 0
    train_split = stratified_subset(data.train, cfg.subset, cfg.seed) if cfg.subset else data.train
    test_curve = stratified_subset(data.test, cfg.test_subset, cfg.seed) if cfg.test_subset else data.test
    cuda = device.type == "cuda"
    amp_dtype = resolve_precision(cfg.precision, device)
    per_rank_batch = recipe.batch_size // world
    if len(train_split) < recipe.batch_size:
        raise TrainingError(f"only {len(train_split)} training images for a batch of {recipe.batch_size}; "
                            f"use a larger --subset or a smaller --batch-size")
    loader = DeviceLoader(train_split, per_rank_batch, device, train=True, seed=cfg.seed, rank=rank,
                          world_size=world, channels_last=True)
    test_loader = DeviceLoader(test_curve, eval_batch_size(device), device, train=False, rank=rank, world_size=world,
                               channels_last=True)
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * recipe.epochs

    torch.manual_seed(cfg.seed)
    # channels_last suits cuDNN and oneDNN alike (1.5x for fp32 ResNet-20 on the CPU, BENCHMARKS.md).
    raw = CifarResNet(arch).to(device).to(memory_format=torch.channels_last)
    if cuda:
        torch.backends.cudnn.benchmark = True
    optimizer = torch.optim.SGD(raw.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                                weight_decay=recipe.weight_decay)
    state = {"epoch": 0, "batch": 0, "step": 0, "elapsed_s": 0.0, "warm_done": arch.depth < WARMUP_110["min_depth"]
             or cfg.preset != "paper", "sums": [0.0, 0.0, 0.0]}
    config_record = {**asdict(cfg), "recipe": recipe.to_dict(), "precision_used": precision_label(amp_dtype),
                     "data": data_record(data)}
    ck_path = out / ckpt.FILENAME
    resumed_from, momentum_restarted = None, False
    if cfg.resume and ck_path.is_file():
        saved = ckpt.read_state(ck_path).get("config", {})
        for key in ("depth", "plain", "shortcut", "preset", "seed", "subset"):
            if key in saved and saved[key] != getattr(cfg, key):
                raise TrainingError(f"--resume: the checkpoint in {out} was written with {key}={saved[key]!r}, "
                                    f"not {getattr(cfg, key)!r}; resume with the same settings or use another --out")
        for key in SCHEDULE_KEYS:
            if saved.get(key) is not None and not math.isclose(saved[key], getattr(recipe, key)):
                raise TrainingError(f"--resume: the checkpoint in {out} was written with {key}={saved[key]!r}, not "
                                    f"{getattr(recipe, key)!r}; leave --{key.replace('_', '-')} out to keep the "
                                    f"checkpoint's, or use another --out")
        state = ckpt.load_checkpoint(ck_path, raw, optimizer)
        resumed_from = state["step"]
        momentum_restarted = resumed_from in state.get("momentum_restarts", [])
        if momentum_restarted and is_main:
            print(f"--resume: the checkpoint in {out} holds no SGD momentum (park --drop-momentum); "
                  f"it restarts from zero at step {resumed_from}", file=sys.stderr)
    elif cfg.resume:
        print(f"--resume: no checkpoint in {out} yet, starting from scratch", file=sys.stderr)
    if is_main:
        atomic_write_json(out / "config.json", config_record)
    state["config"] = {**{k: config_record[k] for k in ("depth", "plain", "shortcut", "preset", "seed", "subset")},
                       **{k: getattr(recipe, k) for k in SCHEDULE_KEYS}}

    model: torch.nn.Module = raw
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(raw, device_ids=[device.index] if cuda else None)
    if cfg.compile:
        model = torch.compile(model)

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None)

    emit({"type": "start", "config": config_record, "arch": arch.to_dict(), "label": arch.label,
          "params": count_params(raw), "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
          "epochs": recipe.epochs, "batch_size": recipe.batch_size, "train_images": len(train_split),
          "test_images": len(test_curve), "device": hardware_name(device, world), "world_size": world,
          "resumed_from_step": resumed_from, "momentum_restarted": momentum_restarted,
          "time": time.time()})

    step = state["step"]
    elapsed_before = state["elapsed_s"]
    run_start = time.time()
    sums = torch.tensor(state["sums"], dtype=torch.float64, device=device)  # loss sum, correct, count this epoch
    last_emit, last_emit_step = time.time(), step
    step_time = None  # seconds per step, smoothed
    eval_time = 0.0
    warm_errors: list[float] = list(state.get("warm_errors", []))
    last_save = time.time()
    model.train()

    def elapsed() -> float:
        return elapsed_before + time.time() - run_start

    def eta() -> float | None:
        if step_time is None:
            return None
        evals_left = recipe.epochs - step // steps_per_epoch
        return (total_steps - step) * step_time + evals_left * eval_time

    def save(epoch: int, batch: int) -> None:
        nonlocal last_save
        last_save = time.time()
        if not is_main:
            return
        # a finite loss can still be followed by a step that made the weights inf: never checkpoint those
        check_finite(sum(p.detach().abs().sum().item() for p in raw.parameters()), "sum of the weights' magnitudes")
        state.update(epoch=epoch, batch=batch, step=step, elapsed_s=elapsed(), sums=sums.tolist(),
                     warm_errors=warm_errors[-20:])
        ckpt.save_checkpoint(ck_path, raw, optimizer, state)
        emit({"type": "checkpoint", "epoch": epoch, "batch": batch, "step": step, "path": str(ck_path)})

    def stopped(epoch: int, batch: int) -> dict:
        check_finite(_all_sum(sums[:1].clone(), world).item())  # the loss is only checked now and then
        save(epoch, batch)
        end = {"type": "end", "status": "stopped", "step": step, "elapsed_s": elapsed(),
               "message": f"stopped at step {step}; resume with --resume --out {out}"}
        emit(end)
        return end

    def check_finite(value: float, what: str = "loss") -> None:
        if not math.isfinite(value):
            raise TrainingError(f"the {what} became {value} at step {step} (epoch {step / steps_per_epoch:.2f}); "
                                f"training diverged. Try a lower --lr. The last good checkpoint in {out} is kept.")

    for epoch in range(state["epoch"], recipe.epochs):
        start_batch = state["batch"] if epoch == state["epoch"] else 0
        if start_batch == 0:
            sums.zero_()
        for batch_index, (x, y) in enumerate(loader.epoch(epoch, start_batch), start=start_batch):
            if stop():
                return stopped(epoch, batch_index)
            lr = recipe.lr_at(step, total_steps)
            if not state["warm_done"]:
                lr = WARMUP_110["lr"]
            for g in optimizer.param_groups:
                g["lr"] = lr
            with autocast():
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            with torch.no_grad():
                correct = (logits.argmax(1) == y).sum()
                sums[0] += loss.detach().double() * len(y)
                sums[1] += correct
                sums[2] += len(y)
            if not state["warm_done"]:  # depth-110 warm-up: leave it once training error < 80%
                warm_errors.append(1.0 - correct.item() / len(y))
                if len(warm_errors) >= 20 and sum(warm_errors[-20:]) / 20 < WARMUP_110["until_train_error"]:
                    state["warm_done"] = True
            now = time.time()
            if is_main and (now - last_emit >= 0.5 or batch_index == steps_per_epoch - 1):
                loss_value = loss.item()
                check_finite(loss_value)
                per_step = (now - last_emit) / max(1, step - last_emit_step)
                step_time = per_step if step_time is None else 0.7 * step_time + 0.3 * per_step
                emit({"type": "step", "step": step, "epoch": step / steps_per_epoch, "loss": loss_value,
                      "acc": correct.item() / len(y), "lr": lr, "images_per_s": recipe.batch_size / per_step,
                      "eta_s": eta(), "elapsed_s": elapsed(), "total_steps": total_steps})
                last_emit, last_emit_step = now, step
            # A mid-epoch checkpoint for long epochs (110 layers on a CPU: ~20 min): a kill (the machine going
            # away, SIGKILL) then costs minutes, not the epoch. The epoch's last step is saved after its evaluation.
            if (cfg.checkpoint_minutes and now - last_save >= 60 * cfg.checkpoint_minutes
                    and batch_index < steps_per_epoch - 1):
                if is_main:
                    check_finite(sums[0].item())
                save(epoch, batch_index + 1)
        if stop():  # before the evaluation, so a stop never waits for it; a resume starts with it
            return stopped(epoch, steps_per_epoch)
        t_eval = time.time()
        totals = _all_sum(sums.clone(), world).tolist()
        train_loss, train_acc = totals[0] / max(1, totals[2]), totals[1] / max(1, totals[2])
        check_finite(train_loss)
        test_loss, test_acc = _test_metrics(model, test_loader, world, autocast)
        eval_time = time.time() - t_eval
        last_emit = time.time()  # the evaluation is not training time for the throughput figure
        emit({"type": "epoch", "epoch": epoch + 1, "step": step, "train_loss": train_loss, "train_acc": train_acc,
              "test_loss": test_loss, "test_acc": test_acc, "lr": recipe.lr_at(step - 1, total_steps),
              "elapsed_s": elapsed(), "eta_s": eta()})
        sums.zero_()
        save(epoch + 1, 0)

    if not is_main:
        return {"step": step}
    return _finish(cfg, arch, recipe, raw, data, device, out, emit, elapsed(), step, world,
                   state.get("momentum_restarts", []))


def _finish(cfg, arch, recipe, raw, data: Cifar10, device, out: Path, emit: Listener, wall: float, step: int,
            world: int, momentum_restarts: list[int]) -> dict:
    """Final single-view evaluation on the whole test set; weights, predictions, then metrics.json last."""
    result = evaluate(raw, data.test, device, flip_tta=cfg.flip_tta)
    sha = save_model(out / "model.safetensors", raw, arch)
    save_predictions(out / "preds.npz", predictions_arrays(result["probs"], data.test.labels))
    record = {
        **arch.to_dict(), "name": arch.name, "label": arch.label, "params": count_params(raw),
        "normalization": {"mean": list(MEAN), "std": list(STD)}, "classes": list(CLASSES),
        "recipe": recipe.to_dict(), "preset": cfg.preset, "epochs": recipe.epochs, "seed": cfg.seed,
        "subset": cfg.subset, "data": data_record(data), "command": cfg.command, "wall_time_s": round(wall, 1),
        "steps": step,
        "hardware": across_run(out, lambda e: e.get("device")) or hardware_name(device, world),
        "torch": torch.__version__,
        "precision": across_run(out, lambda e: e.get("config", {}).get("precision_used"))
        or precision_label(resolve_precision(cfg.precision, device)),
        "test_accuracy": result["accuracy"], "test_loss": result["loss"], "test_images": result["n"],
        "per_class": result["per_class"], "confusion": result["confusion"],
        "file": "model.safetensors", "sha256": sha, "history": "events.jsonl", "predictions": "preds.npz",
    }
    if "accuracy_flip_tta" in result:
        record["test_accuracy_flip_tta"] = result["accuracy_flip_tta"]
    if momentum_restarts:  # resumed from a parked checkpoint without momentum: not one unbroken optimisation
        record["momentum_restarts"] = momentum_restarts
    atomic_write_json(out / "metrics.json", record)
    emit({"type": "end", "status": "completed", "step": step, "elapsed_s": wall, "test_accuracy": result["accuracy"],
          "test_images": result["n"], "data": record["data"]["kind"],
          "message": f"finished: test accuracy {100 * result['accuracy']:.2f}% on {result['n']:,} "
                     f"{'built-in ' if record['data']['kind'] == 'builtin' else ''}test images ({arch.label})"})
    return record
