"""Resumable training state as one safetensors file: model, BN statistics, SGD momentum, and the loop position.

No pickle: tensors go in the tensor table, the rest (step, epoch, partial epoch sums, config) in the JSON metadata.
Written atomically, so the last good checkpoint survives a crash, a full disk or a kill mid-save.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .storage import atomic_write_bytes
from .weights import WeightsError, read_header, safetensors_bytes, state_tensors

FORMAT = "resnet-demo-checkpoint/1"
FILENAME = "checkpoint.safetensors"


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    tensors = {f"model.{k}": v for k, v in state_tensors(model).items()}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"momentum.{i}"] = buf.detach().to("cpu").contiguous()
    atomic_write_bytes(path, safetensors_bytes(tensors, {"format": FORMAT, "state": json.dumps(state)}))


def read_state(path: str | os.PathLike) -> dict:
    """The loop state (with the run's config) alone, to check a resume's settings before touching the model."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        header = read_header(head + f.read(min(n, 100_000_000)), str(path))
    meta = header.get("__metadata__", {})
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a training checkpoint of this project")
    return json.loads(meta["state"])


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(loop state, tensors) of a whole checkpoint file; WeightsError if it is not one of ours or is damaged."""
    from safetensors.torch import load

    data = path.read_bytes()
    header = read_header(data, str(path))
    meta = header.get("__metadata__", {})
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a training checkpoint of this project")
    try:
        return json.loads(meta["state"]), load(data)
    except Exception as e:
        raise WeightsError(f"{path} is corrupt: {e}") from e


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model and optimizer in place; returns the loop state. Raises WeightsError on a bad file."""
    path = Path(path)
    state, tensors = _read(path)
    raw = getattr(getattr(model, "_orig_mod", model), "module", getattr(model, "_orig_mod", model))
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        raw.load_state_dict(model_state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{path} does not fit this model (was it written for another depth or variant?): {e}") from e
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        if f"momentum.{i}" in tensors:
            optimizer.state[p]["momentum_buffer"] = tensors[f"momentum.{i}"].to(p.device, p.dtype)
    return state

