"""Resumable training state as one safetensors file: model, BN statistics, SGD momentum, and the loop position.

No pickle: tensors go in the tensor table, the rest (step, epoch, partial epoch sums, config) in the JSON metadata.
Written atomically, so the last good checkpoint survives a crash, a full disk or a kill mid-save.

Saving costs the training loop one copy of the state, not one per tensor: `snapshot` gathers every tensor of a
dtype into one flat buffer on the device and copies that to the host at once (two copies for a CIFAR ResNet:
float32 and the BatchNorm counters' int64). Writing the file and its fsync happen on a background thread
(`CheckpointWriter`), one write at a time; its failure is raised on the training thread at the next save or
when the run waits for it.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from resnet_demo.base.storage import atomic_write_bytes
from resnet_demo.store.weights import WeightsError, read_file_header, read_header, safetensors_bytes

FORMAT = "resnet-demo-checkpoint/1"
FILENAME = "checkpoint.safetensors"


@dataclass
class Snapshot:
    """A checkpoint's content, copied off the live tensors: per dtype, one flat host buffer; where each tensor
    lies in it; and the metadata (the loop state already serialised, so later changes to it do not leak in)."""

    flat: dict[torch.dtype, torch.Tensor]
    layout: list[tuple[str, torch.dtype, tuple[int, ...], int]]  # name, dtype, shape, offset into flat[dtype]
    metadata: dict[str, str]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Contiguous CPU tensors of their own storage, as safetensors writes them."""
        return {name: self.flat[dtype][offset:offset + _numel(shape)].view(shape).clone()
                for name, dtype, shape, offset in self.layout}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself, looked for through torch.compile's and DDP's wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def _named_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 extra: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v.detach() for k, v in _unwrapped(model).state_dict().items()}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"momentum.{i}"] = buf.detach()
    tensors.update({k: v.detach() for k, v in (extra or {}).items()})
    return tensors


def snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict,
             extra: dict[str, torch.Tensor] | None = None) -> Snapshot:
    """The checkpoint of (model, optimizer, state) as it is now; `extra`: more named tensors to keep (their
    names must not start with "model." or "momentum."). On a GPU: a gather per dtype, then one copy each."""
    named = _named_state(model, optimizer, extra)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    filled: dict[torch.dtype, int] = {}
    layout = []
    for name, t in named.items():
        layout.append((name, t.dtype, tuple(t.shape), filled.get(t.dtype, 0)))
        filled[t.dtype] = filled.get(t.dtype, 0) + t.numel()
        by_dtype.setdefault(t.dtype, []).append(t)
    # reshape(-1) reads a tensor in its logical (NCHW) order whatever its memory format, as safetensors stores it;
    # torch.cat makes a new buffer, so the copy never aliases the live weights, on the CPU either
    flat = {dtype: torch.cat([t.reshape(-1) for t in group]).to("cpu") for dtype, group in by_dtype.items()}
    return Snapshot(flat, layout, {"format": FORMAT, "state": json.dumps(state)})


def write_snapshot(path: str | os.PathLike, snap: Snapshot) -> None:
    atomic_write_bytes(path, safetensors_bytes(snap.tensors(), snap.metadata))


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict) -> None:
    """Copy and write at once, on this thread."""
    write_snapshot(path, snapshot(model, optimizer, state))


class CheckpointWriter:
    """Writes checkpoints on a background thread, one at a time, so that the training thread never waits for the
    disk or its fsync.

    submit() waits for the write before it (a checkpoint is never overtaken by an older one), then starts this
    one and returns. wait() and poll() hand back what was submitted with a write once it is on disk (the
    training loop's 'checkpoint' event), and raise the write's error (a StorageError: disk full, read-only
    folder) on the calling thread: a failed write is the run's failure, never lost. The write itself is
    atomic, so a process killed meanwhile leaves the previous checkpoint whole.
    """

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._done = None

    def submit(self, path: str | os.PathLike, snap: Snapshot, done=None) -> None:
        if self._thread is not None:
            raise RuntimeError("collect the previous checkpoint write (wait or poll) before submitting another")

        def write() -> None:
            try:
                write_snapshot(path, snap)
            except BaseException as e:  # noqa: BLE001 - handed to the training thread by wait()
                self._error = e

        self._done = done
        self._thread = threading.Thread(target=write, name="checkpoint-writer")
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def poll(self):
        """The finished write's `done` (None while it runs, or when none was submitted); raises its error."""
        if self._thread is not None and not self._thread.is_alive():
            return self.wait()
        return None

    def wait(self):
        """Wait for the write in flight; its `done`, or None when there was none; raises its error."""
        if self._thread is None:
            return None
        self._thread.join()
        self._thread, done, self._done = None, self._done, None
        error, self._error = self._error, None
        if error is not None:
            raise error
        return done


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
    """Restore model and optimizer in place; returns the loop state. Raises WeightsError on a bad file.

    Each momentum buffer takes its parameter's memory format (channels_last for a convolution's): the fused
    (foreach) SGD update, torch's and the captured step's, wants a parameter and its buffer laid out alike, and
    falls back to one kernel per tensor when they are not."""
    from safetensors.torch import load

    path = Path(path)
    data = path.read_bytes()
    state = _state(read_header(data, str(path)), path)
    try:
        tensors = load(data)
    except Exception as e:
        raise WeightsError(f"{path} is corrupt: {e}") from e
    raw = _unwrapped(model)
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        raw.load_state_dict(model_state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{path} does not fit this model (was it written for another depth or variant?): {e}") from e
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        saved = tensors.get(f"momentum.{i}")
        if saved is None:
            continue
        if saved.shape != p.shape:
            raise WeightsError(f"{path} does not fit this model: momentum {i} has shape {tuple(saved.shape)}, "
                               f"its parameter {tuple(p.shape)}")
        buf = torch.empty_like(p, memory_format=torch.preserve_format)
        optimizer.state[p]["momentum_buffer"] = buf.copy_(saved)
    return state
