"""How much memory a training run will need, and whether this machine lets it start.

Why: a job's memory is fixed by its settings (depth, batch, precision, images), and a job that does not fit does
not fail cleanly: on a CPU it grows until the kernel's out-of-memory killer ends it, or the server beside it. So
the need is estimated before anything is allocated, and a job that would not fit is refused with the reason and
settings that would fit. The estimate:

    framework (interpreter, torch, oneDNN / the CUDA context)
  + data (the CIFAR-10 arrays as read, the subsets, the padded training copy the loader draws batches from)
  + model (weights, gradients, momentum, a checkpoint being written, bf16 copies under autocast)
  + batch x (the bytes a forward pass keeps for the backward pass, per image, x a calibrated factor)

The bytes kept per image come from the network itself: a forward pass on PyTorch's "meta" device (shapes only, no
memory) counts the tensors autograd saves. The factor covers what the count leaves out (gradients in flight,
the allocator's slack) and was fitted to the trainer's measured peak resident memory on a 2-core CPU
(BENCHMARKS.md, "Training memory"; `python -m benchmarks.memory`). On CUDA the factors are not calibrated and are
set generously (see CUDA_* below).

The person running the server can lower the limits (documented in docs/CLASSROOM.md):
RESNET_DEMO_MAX_TRAIN_GB caps the memory a job may use, RESNET_DEMO_MAX_DEPTH and RESNET_DEMO_MAX_BATCH cap the
settings.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from resnet_demo.base.device import precision_label, resolve_device, resolve_precision
from resnet_demo.nets.model import CifarResNet, count_params
from resnet_demo.nets.paper import PRESET_DEPTHS, blocks_per_stage
from resnet_demo.store.weights import WeightsError
from resnet_demo.training import checkpoint as ckpt
from resnet_demo.training.config import TrainConfig
from resnet_demo.training.recipes import RECIPES

log = logging.getLogger(__name__)

GB = 1e9
ENV_MAX_GB = "RESNET_DEMO_MAX_TRAIN_GB"
ENV_MAX_DEPTH = "RESNET_DEMO_MAX_DEPTH"
ENV_MAX_BATCH = "RESNET_DEMO_MAX_BATCH"

TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000  # CIFAR-10's splits: load_cifar10 reads both whole
IMAGE_BYTES = 32 * 32 * 3                   # uint8
PADDED_BYTES = 40 * 40 * 3                  # the training copy, padded by 4 for the random crops
INPUT_BYTES = IMAGE_BYTES * (1 + 4 + 4)     # a batch's gathered uint8, its float copy, its channels-last float
MODEL_BYTES_PER_PARAM = 4 * 3 + 8 + 2       # weight, grad, momentum; a checkpoint's buffer; a bf16 copy

# Fitted to the measured peaks (BENCHMARKS.md, "Training memory"): the trainer's resident memory before its first
# batch, and its peak bytes per byte the fp32 count says autograd saves, for each precision.
CPU_FRAMEWORK = 0.78 * GB
CPU_ACTIVATION_FACTOR = {"fp32": 1.32, "bf16 autocast": 0.72}
# Not measured here (no GPU was at hand): a CUDA context, cuDNN's workspaces, and the CUDA-graph step keeping its
# own pool beside the eager warm-up's; twice the CPU's bf16 factor and a 1 GB context, to err on the safe side.
CUDA_CONTEXT = 1.0 * GB
CUDA_ACTIVATION_FACTOR = 2 * CPU_ACTIVATION_FACTOR["bf16 autocast"]
CUDA_HOST_EXTRA = 1.5 * GB                  # the CUDA libraries in the trainer's host memory

SAFETY_MARGIN = (1.0 * GB, 0.10)            # kept free: the larger of 1 GB and 10 % of the machine's memory
GPU_MARGIN = 0.05                           # of the GPU's memory


class TooBig(ValueError):
    """The job does not fit this machine, or this server's limits; the message says why and what would fit."""


@dataclass(frozen=True)
class Need:
    """A job's estimated peak memory on the device it trains on, in bytes, by part."""

    device: str                 # "cpu" or "cuda"
    framework: float
    data: float
    model: float
    activations: float
    cuda_host: float = 0.0      # on CUDA: the trainer's memory on the host besides

    @property
    def total(self) -> float:
        return self.framework + self.data + self.model + self.activations


@dataclass(frozen=True)
class Allowance:
    """What this machine lets a job use now, in bytes, and where the figure comes from."""

    bytes: float
    reason: str


# ---------------------------------------------------------------- the estimate


@functools.cache
def _meta_counts(depth: int, plain: bool, shortcut: str) -> tuple[int, int]:
    """(bytes autograd saves for one image in fp32, parameters) of a network, from a forward pass on the meta
    device: shapes only, nothing allocated."""
    with torch.device("meta"):
        model = CifarResNet(TrainConfig(depth=depth, plain=plain, shortcut=shortcut).arch)
        x = torch.zeros(1, 3, 32, 32)
    params = {id(p) for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in params:
            saved[id(t)] = t.numel() * 4
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(saved.values()), count_params(model)


def network_counts(depth: int, plain: bool = False, shortcut: str = "A") -> tuple[int, int]:
    """(fp32 bytes saved for the backward pass per image, parameters). Both grow by the same amount with each
    block per stage, so two small networks give any depth (ResNet-1202 itself would take seconds)."""
    n = blocks_per_stage(depth)
    (s1, p1), (s2, p2) = _meta_counts(8, plain, shortcut), _meta_counts(14, plain, shortcut)
    return s1 + (n - 1) * (s2 - s1), p1 + (n - 1) * (p2 - p1)


def _batch(cfg: TrainConfig) -> int:
    return cfg.batch_size or RECIPES[cfg.preset].batch_size


def _images(cfg: TrainConfig) -> tuple[int, int]:
    return min(cfg.subset or TRAIN_IMAGES, TRAIN_IMAGES), min(cfg.test_subset or TEST_IMAGES, TEST_IMAGES)


def estimate(cfg: TrainConfig, device: torch.device | str | None = None, world_size: int = 1) -> Need:
    """The peak memory of one training process of this job (one of `world_size` under torchrun)."""
    device = resolve_device(cfg.device) if device is None else torch.device(device)
    precision = precision_label(resolve_precision(cfg.precision, device))
    batch = max(1, _batch(cfg) // world_size)
    saved, params = network_counts(cfg.depth, cfg.plain, cfg.shortcut)
    n_train, n_test = _images(cfg)
    read = (TRAIN_IMAGES + TEST_IMAGES) * (IMAGE_BYTES + 8)
    subsets = (n_train < TRAIN_IMAGES) * n_train * IMAGE_BYTES + (n_test < TEST_IMAGES) * n_test * IMAGE_BYTES
    on_device = n_train * (PADDED_BYTES + 8)
    model = params * MODEL_BYTES_PER_PARAM
    if device.type == "cuda":
        return Need("cuda", CUDA_CONTEXT, on_device + n_test * (IMAGE_BYTES + 8), model,
                    batch * (saved * CUDA_ACTIVATION_FACTOR + INPUT_BYTES),
                    cuda_host=CPU_FRAMEWORK + CUDA_HOST_EXTRA + read + subsets + on_device)
    return Need("cpu", CPU_FRAMEWORK, read + subsets + on_device, model,
                batch * (saved * CPU_ACTIVATION_FACTOR[precision] + INPUT_BYTES))


# ---------------------------------------------------------------- what the machine allows


def _meminfo() -> dict[str, float]:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return {}
    return {k: float(v.split()[0]) * 1024 for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}


def _cgroup_room() -> float | None:
    """Bytes this process's cgroup (v2) may still use, when it has a limit (a container)."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
    except OSError:
        return None
    return None if limit == "max" else max(0.0, float(limit) - float(used))


def host_memory() -> tuple[float | None, float | None]:
    """(available, total) bytes of this machine's memory (a container's limit counts), None where unknown."""
    info = _meminfo()
    available, total = info.get("MemAvailable"), info.get("MemTotal")
    room = _cgroup_room()
    if room is not None:
        available = room if available is None else min(available, room)
    return available, total


def env_number(name: str, kind=float) -> float | None:
    """A server setting from the environment: None where unset, ValueError (saying what is wanted) where not above 0."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        value = 0
    if not value > 0:
        what = "a whole number" if kind is int else "a number of gigabytes"
        raise ValueError(f"the server's setting {name} must be {what} above 0, not {text!r}; "
                         f"whoever runs the server can correct it")
    return value


def env_count(name: str, default: int, most: int) -> int:
    """A whole-number server setting from 1 to `most`: its value, else `default`, where it is unset or (said in
    the server's log, never ignored silently) not a whole number in range."""
    try:
        value = env_number(name, int)
    except ValueError as e:
        log.warning("%s; using %d", e, default)
        return default
    if value is None:
        return default
    if value > most:
        log.warning("the server's setting %s must be at most %d, not %d; using %d", name, most, value, default)
        return default
    return int(value)


def _host_room() -> float:
    """This machine's free memory less the safety margin (unbounded where the system does not say)."""
    available, total = host_memory()
    if available is None:
        return float("inf")
    return max(0.0, available - max(SAFETY_MARGIN[0], SAFETY_MARGIN[1] * (total or 0)))


def allowance(device: torch.device | str) -> Allowance:
    """The bytes a job may use on `device`: free memory less a safety margin, and at most RESNET_DEMO_MAX_TRAIN_GB."""
    device = torch.device(device)
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        room, reason = max(0.0, free - GPU_MARGIN * total), "the GPU memory free now, less a safety margin"
    else:
        room, reason = _host_room(), "the memory free now, less a safety margin"
    cap = env_number(ENV_MAX_GB)
    if cap is not None and cap * GB < room:
        return Allowance(cap * GB, "its limit for a training job")
    return Allowance(room, reason)


# ---------------------------------------------------------------- the check


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB" if n < 10 * GB else f"{n / GB:,.0f} GB"


def _alternatives(cfg: TrainConfig, device: torch.device, room: float, world_size: int) -> str:
    """What would fit: the largest batch at this depth (halving), and the deepest paper depth at this batch, or else
    at the preset's own batch."""
    def fits(**changes) -> bool:
        return estimate(replace(cfg, **changes), device, world_size).total <= room

    batch = _batch(cfg)
    tries = []
    smaller = [b for b in (batch // 2 ** k for k in range(1, 12)) if b >= 8]
    tries += [f"batch {b}" for b in smaller if fits(batch_size=b)][:1]
    for b in dict.fromkeys((batch, min(batch, RECIPES[cfg.preset].batch_size))):
        depths = [d for d in sorted(PRESET_DEPTHS, reverse=True) if d < cfg.depth and fits(depth=d, batch_size=b)]
        if depths:
            tries.append(f"depth {depths[0]}" + (f" at batch {b}" if b != batch or tries else ""))
            break
    if not tries:
        return "No training job of this kind fits in the memory left now; try again when other work has finished."
    return "Try " + " or ".join(tries) + "."


def check_settings(cfg: TrainConfig) -> None:
    """TooBig when the depth or batch is above this server's caps (RESNET_DEMO_MAX_DEPTH, _MAX_BATCH)."""
    max_depth, max_batch = env_number(ENV_MAX_DEPTH, int), env_number(ENV_MAX_BATCH, int)
    batch = _batch(cfg)
    if max_depth is not None and cfg.depth > max_depth:
        ok = [d for d in PRESET_DEPTHS if d <= max_depth]
        raise TooBig(f"depth {cfg.depth} is more than this server allows ({max_depth} layers at most)"
                     + (f"; try depth {ok[-1]}." if ok else "."))
    if max_batch is not None and batch > max_batch:
        raise TooBig(f"batch {batch} is more than this server allows ({max_batch} at most); try batch "
                     f"{max_batch}.")


def _as_resumed(cfg: TrainConfig) -> TrainConfig:
    """On --resume, the schedule settings left open are the checkpoint's (train.py's rule): its batch size."""
    path = Path(cfg.out) / ckpt.FILENAME
    if not cfg.resume or not path.is_file():
        return cfg
    try:
        return cfg.with_schedule_of(ckpt.read_state(path).get("config", {}))
    except WeightsError:
        return cfg  # an unreadable checkpoint is the trainer's to report, with its own message


def check(cfg: TrainConfig, world_size: int = 1) -> Need:
    """The job's estimated need, or TooBig (saying why, and what would fit) when this machine or server cannot
    take it. ValueError for settings that are wrong in themselves."""
    cfg = _as_resumed(cfg)
    cfg.validate()
    check_settings(cfg)
    device = resolve_device(cfg.device)
    need = estimate(cfg, device, world_size)
    allowed = allowance(device)
    where = "the GPU" if device.type == "cuda" else "the CPU"
    if need.total > allowed.bytes:
        raise TooBig(f"{cfg.arch.label} at batch {_batch(cfg)} on {where} needs "
                     f"about {_gb(need.total)} of memory; this server allows {_gb(allowed.bytes)} for training "
                     f"({allowed.reason}). " + _alternatives(cfg, device, allowed.bytes, world_size))
    if need.cuda_host > _host_room():
        raise TooBig(f"{cfg.arch.label} on the GPU needs about {_gb(need.cuda_host)} of the server's own memory for "
                     f"the data and the CUDA libraries; only {_gb(_host_room())} is free beside a safety margin. Try "
                     f"fewer training images, or try again when other work has finished.")
    return need


def describe(need: Need, allowed: Allowance) -> str:
    """One line for a settings form: the estimate against what is allowed."""
    where = "GPU memory" if need.device == "cuda" else "memory"
    limit = f" of the {_gb(allowed.bytes)} this server allows" if allowed.bytes != float("inf") else ""
    return f"Needs about {_gb(need.total)} of {where}{limit}."
