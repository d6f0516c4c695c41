"""Model weights as safetensors files (never a pickle): the file format, its checks, and nothing else.

A model file carries its architecture and its class names in the safetensors metadata, so it can be rebuilt
without guessing (a file without names, if one turns up, means CIFAR-10's ten).
Loading checks the sha256 (when known) and that every tensor matches the architecture, into a fresh model:
a bad file raises WeightsError and nothing is half-loaded. The same tensors and metadata always give the same
bytes (the header is written canonically), so a file's sha256 is a fingerprint of the weights.
Which models exist and where their files are is registry.py's business; the shipped record is manifest.py's.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

from resnet_demo.base.storage import atomic_write_bytes, sha256_bytes
from resnet_demo.nets.classes import ClassNameError, check_names
from resnet_demo.nets.model import Arch, CifarResNet, classes_of
from resnet_demo.nets.paper import CLASSES, MEAN, STD

FORMAT = "resnet-demo-weights/1"
MAX_HEADER = 100_000_000


class WeightsError(RuntimeError):
    """A weights file is missing, corrupt, or does not match what it claims to be."""


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file whose bytes depend only on the tensors and the metadata.

    safetensors' writer emits the metadata in the order of a Rust hash map, which differs from process to
    process, so the same weights would get another sha256 each time; the header is rewritten with sorted keys.
    """
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", data[:8])
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format aligns the tensor data to 8 bytes
    return struct.pack("<Q", len(header)) + header + data[8 + n:]


def state_tensors(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """CPU tensors of the model's state; DDP/compile wrappers are looked through."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous()
    return out


def model_bytes(model: torch.nn.Module, arch: Arch, dtype: torch.dtype | None = None,
                extra: dict | None = None) -> bytes:
    meta = {
        "format": FORMAT,
        "arch": json.dumps(arch.to_dict()),
        "classes": json.dumps(list(classes_of(model))),
        "normalization": json.dumps({"mean": MEAN, "std": STD}),
    }
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    return safetensors_bytes(state_tensors(model, dtype), meta)


def save_model(path: str | os.PathLike, model: torch.nn.Module, arch: Arch, dtype: torch.dtype | None = None,
               extra: dict | None = None) -> str:
    """Write atomically; returns the file's sha256."""
    data = model_bytes(model, arch, dtype, extra)
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def read_header(data: bytes, where: str) -> dict:
    """The safetensors JSON header (tensor table + __metadata__), validated enough to trust its lengths."""
    if len(data) < 8:
        raise WeightsError(f"{where} is not a safetensors file (only {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > MAX_HEADER:
        raise WeightsError(f"{where} is not a safetensors file, or it is truncated")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{where} has a corrupt header: {e}") from e
    if not isinstance(header, dict):
        raise WeightsError(f"{where} has a corrupt header: not a table of tensors")
    return header


def load_model(path: str | os.PathLike, sha256: str | None = None,
               device: str | torch.device = "cpu") -> tuple[CifarResNet, dict]:
    """(model in eval mode, its metadata). Raises WeightsError with a clear message on any mismatch."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist") from None
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path}: {e}") from e
    return load_model_bytes(data, str(path), sha256, device)


def load_model_bytes(data: bytes, where: str = "the model file", sha256: str | None = None,
                     device: str | torch.device = "cpu") -> tuple[CifarResNet, dict]:
    """load_model for a file already in memory (an upload, a project file's model); `where` names it in messages.
    The metadata's "classes" is the list of checked names (CIFAR-10's when the file names none), "arch" an Arch."""
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise WeightsError(f"{where} does not match its recorded sha256 (expected {sha256[:12]}…, got "
                           f"{sha256_bytes(data)[:12]}…): the file is damaged or was replaced")
    arch, classes, meta = _parse_meta(read_header(data, where), where)
    from safetensors.torch import load

    try:
        state = load(data)
    except Exception as e:  # SafetensorError and friends: truncated or corrupt payload
        raise WeightsError(f"{where} is corrupt: {e}") from e
    model = CifarResNet(arch, classes)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{where} does not fit {arch.label}{'' if classes == CLASSES else f' with {len(classes)} classes'}: "
            + "; ".join(s for s in (
                f"missing {', '.join(missing[:3])}" if missing else "",
                f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
                f"wrong shape {', '.join(wrong[:3])}" if wrong else "") if s))
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    meta["arch"], meta["classes"] = arch, list(classes)
    return model.to(device).eval(), meta


def _parse_meta(header: dict, where: str) -> tuple[Arch, tuple[str, ...], dict]:
    """(architecture, class names, every metadata value decoded) of a model file's header."""
    raw = header.get("__metadata__")
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or "arch" not in raw:
        raise WeightsError(f"{where} is a safetensors file but not one of this project's models (no architecture "
                           f"recorded)")
    try:
        meta = {k: json.loads(v) for k, v in raw.items() if k != "format"}
        arch = Arch.from_dict(meta["arch"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise WeightsError(f"{where} records an invalid architecture: {e}") from e
    try:
        classes = check_names(meta["classes"]) if "classes" in meta else CLASSES
    except ClassNameError as e:
        raise WeightsError(f"{where} records invalid class names: {e}") from e
    return arch, classes, meta


def read_file_header(path: str | os.PathLike) -> dict:
    """The header of a safetensors file, without reading its tensors."""
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        return read_header(head + f.read(min(n, MAX_HEADER)), str(path))


def read_arch(path: str | os.PathLike) -> Arch:
    """The architecture a model file records, from its header alone."""
    return read_file_meta(path)[0]


def read_file_meta(path: str | os.PathLike) -> tuple[Arch, tuple[str, ...]]:
    """(architecture, class names) a model file records, from its header alone."""
    try:
        header = read_file_header(path)
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path}: {e.strerror or e}") from None
    arch, classes, _ = _parse_meta(header, str(path))
    return arch, classes
