"""Resumable training state as one safetensors file: model, BN statistics, SGD momentum, and the loop position.

No pickle: tensors go in the tensor table, the rest (step, epoch, partial epoch sums, config) in the JSON metadata.
Written atomically, so the last good checkpoint survives a crash, a full disk or a kill mid-save.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from resnet_demo.base.storage import atomic_write_bytes
from resnet_demo.store.weights import WeightsError, read_file_header, read_header, safetensors_bytes, state_tensors

FORMAT = "resnet-demo-checkpoint/1"
FILENAME = "checkpoint.safetensors"


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict) -> None:
    tensors = {f"model.{k}": v for k, v in state_tensors(model).items()}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"momentum.{i}"] = buf.detach().to("cpu").contiguous()
    atomic_write_bytes(path, safetensors_bytes(tensors, {"format": FORMAT, "state": json.dumps(state)}))


def _state(header: dict, path: Path) -> dict:
    meta = header.get("__metadata__", {})
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a training checkpoint of this project")
    try:
        return json.loads(meta["state"])
    except (KeyError, ValueError) as e:
        raise WeightsError(f"{path} is corrupt: {e}") from e


def read_state(path: str | os.PathLike) -> dict:
    """The loop state (with the run's config) alone, to check a resume's settings before touching the model."""
    return _state(read_file_header(path), Path(path))


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model and optimizer in place; returns the loop state. Raises WeightsError on a bad file."""
    from safetensors.torch import load

    path = Path(path)
    data = path.read_bytes()
    state = _state(read_header(data, str(path)), path)
    try:
        tensors = load(data)
    except Exception as e:
        raise WeightsError(f"{path} is corrupt: {e}") from e
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
