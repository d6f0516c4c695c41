"""Where training and evaluation run, in what precision, and how a run's record names that hardware.

One place for these policies, so the CLI, the trainer and the benchmarks cannot disagree about what "auto"
means or say the same machine in two ways.
"""
from __future__ import annotations

import contextlib
import platform
import re

import torch

PRECISIONS = ("auto", "bf16", "fp32")
DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


def check_device_name(name: str) -> str:
    """The name itself, if it is one this project can run on; whether that device is present is resolve_device's."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ValueError(f"unsupported device {name!r}: use {DEVICE_NAMES}")
    return name


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when PyTorch sees a GPU, else the CPU. A CUDA device asked for on a machine without one is a
    ValueError that says what to do, rather than a driver traceback later."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for, but PyTorch sees no CUDA GPU here; "
                         "use --device cpu (or auto)")
    return dev


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
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16" or device.type == "cuda" or cpu_has_native_bf16():
        return torch.bfloat16
    return None


def precision_label(amp_dtype: torch.dtype | None) -> str:
    return "bf16 autocast" if amp_dtype == torch.bfloat16 else "fp32"


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """The forward pass's context: bf16 autocast, or nothing at all for fp32."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None)


def cpu_model() -> str:
    """The CPU's marketing name where Linux says it ("AMD EPYC 9R14 96-Core Processor"), else the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_summary() -> str | None:
    """"2 x NVIDIA H100 (80 GiB)", or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    p = torch.cuda.get_device_properties(0)
    return f"{torch.cuda.device_count()} x {p.name} ({p.total_memory / 2**30:.0f} GiB)"


def hardware_name(device: torch.device, world_size: int = 1) -> str:
    """What a run's record says it trained on: the GPU's name, or the CPU's and how many threads torch used."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{cpu_model()}, {torch.get_num_threads()} threads"
    return f"{world_size} x {name}" if world_size > 1 else name
