"""Weights as safetensors (never a pickle), the shipped manifest, and the registry of every loadable model.

A model file carries its architecture in the safetensors metadata, so it can be rebuilt without guessing.
Loading checks the sha256 (when known) and that every tensor matches the architecture, into a fresh model:
a bad file raises WeightsError and nothing is half-loaded. The same tensors and metadata always give the same
bytes (the header is written canonically), so a file's sha256 is a fingerprint of the weights.

Two sources of models:
- shipped: `weights/manifest.json` (+ <name>.safetensors, .history.jsonl, .preds.npz);
- finished runs: `runs/<id>/` with model.safetensors and metrics.json (the same record as a manifest entry).
A shipped model superseded by a better one of its architecture can be retired: its weights leave weights/ (the
git history keeps them) and its training history stays under "retired", because Fig. 6 compares curves of
one recipe, not the best models.
"""
from __future__ import annotations

import io
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .model import Arch, CifarResNet
from .paper import CLASSES, MEAN, STD
from .storage import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file

FORMAT = "resnet-demo-weights/1"
ENV_WEIGHTS = "RESNET_DEMO_WEIGHTS"
ENV_RUNS = "RESNET_DEMO_RUNS"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
BUDGET_BYTES = 30_000_000  # weights/ travels with every clone, so a teacher's fresh laptop gets it in one quick pull


class WeightsError(RuntimeError):
    """A weights file is missing, corrupt, or does not match what it claims to be."""


def weights_dir() -> Path:
    return Path(os.environ.get(ENV_WEIGHTS) or PACKAGE_ROOT / "weights")


def size_bytes(directory: Path | None = None) -> int:
    """All files under weights/ (or another directory), for the budget above."""
    return sum(f.stat().st_size for f in (directory or weights_dir()).rglob("*") if f.is_file())


def runs_dir() -> Path:
    return Path(os.environ.get(ENV_RUNS) or "runs")


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


def model_bytes(model: torch.nn.Module, arch: Arch, dtype: torch.dtype | None = None, extra: dict | None = None) -> bytes:
    meta = {
        "format": FORMAT,
        "arch": json.dumps(arch.to_dict()),
        "classes": json.dumps(list(CLASSES)),
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
    if n > len(data) - 8 or n > 100_000_000:
        raise WeightsError(f"{where} is not a safetensors file, or it is truncated")
    try:
        return json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{where} has a corrupt header: {e}") from e


def load_model(path: str | os.PathLike, sha256: str | None = None, device: str | torch.device = "cpu") -> tuple[CifarResNet, dict]:
    """(model in eval mode, its metadata). Raises WeightsError with a clear message on any mismatch."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist") from None
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path}: {e}") from e
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise WeightsError(f"{path} does not match its recorded sha256 (expected {sha256[:12]}…, got "
                           f"{sha256_bytes(data)[:12]}…): the file is damaged or was replaced")
    header = read_header(data, str(path))
    meta = {k: json.loads(v) for k, v in header.get("__metadata__", {}).items() if k != "format"}
    if header.get("__metadata__", {}).get("format") != FORMAT or "arch" not in meta:
        raise WeightsError(f"{path} is a safetensors file but not one of this project's models (no architecture recorded)")
    try:
        arch = Arch.from_dict(meta["arch"])
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"{path} records an invalid architecture: {e}") from e
    from safetensors.torch import load

    try:
        state = load(data)
    except Exception as e:  # SafetensorError and friends: truncated or corrupt payload
        raise WeightsError(f"{path} is corrupt: {e}") from e
    model = CifarResNet(arch)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{path} does not fit {arch.label}: "
            + "; ".join(s for s in (
                f"missing {', '.join(missing[:3])}" if missing else "",
                f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
                f"wrong shape {', '.join(wrong[:3])}" if wrong else "") if s))
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    meta["arch"] = arch
    return model.to(device).eval(), meta


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
        return model

    def load_predictions(self) -> dict[str, np.ndarray] | None:
        if self.predictions is None or not self.predictions.is_file():
            return None
        with np.load(self.predictions, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def load_history(self) -> list[dict]:
        from .events import read_events

        return read_events(self.history) if self.history else []


def read_manifest(directory: Path | None = None) -> dict:
    path = (directory or weights_dir()) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {"models": {}}
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path} is unreadable: {e}") from e


def _entry(name: str, record: dict, base: Path, source: str, label: str | None = None) -> ModelEntry:
    arch = Arch.from_dict(record)

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
            for e, n in zip(twins, epochs):
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
        try:
            rec = json.loads(metrics.read_text())
            arch = Arch.from_dict(rec)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a foreign or damaged folder is skipped, not fatal
        run_id = metrics.parent.name
        out.append(_entry(f"run:{run_id}", rec, metrics.parent, "run", f"{arch.label} · run {run_id}"))
    return out


def list_models() -> list[ModelEntry]:
    return shipped_models() + finished_runs()


def resolve(name_or_path: str) -> ModelEntry:
    """A registry name (e.g. "resnet20", "run:<id>") or a path to a .safetensors file."""
    for entry in list_models():
        if entry.name == name_or_path:
            return entry
    for entry in retired_models():
        if entry.name == name_or_path:
            entry.load()  # raises, saying what it was retired for and where its weights went
    p = Path(name_or_path)
    if p.is_file():
        header = read_header(p.read_bytes()[:1 << 20] if p.stat().st_size > 1 << 20 else p.read_bytes(), str(p))
        try:
            arch = Arch.from_dict(json.loads(header["__metadata__"]["arch"]))
        except (KeyError, ValueError, TypeError) as e:
            raise WeightsError(f"{p} is not one of this project's models: {e}") from e
        return ModelEntry(name=str(p), label=arch.label, arch=arch, weights=p, source="file")
    known = ", ".join(e.name for e in list_models()) or "none yet"
    raise WeightsError(f"no model named {name_or_path!r} and no such file; known models: {known}")


def save_predictions(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def write_manifest_entry(name: str, record: dict, directory: Path | None = None) -> None:
    directory = directory or weights_dir()
    manifest = read_manifest(directory)
    manifest.setdefault("models", {})[name] = record
    manifest.get("retired", {}).pop(name, None)  # shipping a retired name again replaces its history
    manifest["models"] = dict(sorted(manifest["models"].items(), key=lambda kv: (kv[1].get("plain", False), kv[1].get("depth", 0))))
    atomic_write_json(directory / "manifest.json", manifest)


__all__ = [
    "WeightsError", "ModelEntry", "save_model", "load_model", "list_models", "resolve", "shipped_models",
    "retired_models", "with_history", "finished_runs", "read_manifest", "write_manifest_entry", "save_predictions",
    "sha256_file", "atomic_write_json",
]
