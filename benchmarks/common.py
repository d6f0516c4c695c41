"""What every benchmark shares: the result row, the machine description, timing, data and model folders.

Numbers are only worth comparing with the machine they came from, so every report carries that machine
(CPU model, threads, torch, GPU, and the load average, which says whether other work shared the cores).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    """One line of the report. value None means not measured; `notes` says why, or how it was measured."""

    id: str
    row: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)  # raw samples and settings, for the JSON only

    def to_dict(self) -> dict:
        return asdict(self)


def skipped(id: str, row: str, unit: str, target: str, reason: str) -> Row:
    return Row(id, row, None, unit, target, None, f"skipped: {reason}")


# ---------------------------------------------------------------- the JSON every benchmark command writes

SCHEMA = "resnet-demo-benchmarks/1"


def figure_id(kind: str, depth: int, variant: str | None = None) -> str:
    """The stable id of a GPU-training figure, the same in every command's JSON: "throughput" (images/s of
    train() with the default step; variant "eager" or "baseline" for the others), "ratio" (the default step
    over the tutorial baseline) or "tta" (seconds to Table 6, null when not reached), e.g. throughput.r20."""
    return f"{kind}.r{depth}" + (f".{variant}" if variant else "")


class Report:
    """One benchmark command's record, rewritten atomically each time a figure or part is added, so a run cut
    off anywhere leaves a valid JSON of everything measured until then (`parts` says what was done).

    Top level: schema, tool, command, quick (a check of the script, not results), time, device (the GPU's name,
    else the CPU's), torch, step_path (the training steps the figures ran, "cuda-graph", "eager", ..., leaving
    out rows whose extra names a `variant`, such as throughput.r20.eager), parts,
    rows (Row.to_dict(): id, row, value, unit, target, met, notes, extra), and whatever the tool adds."""

    def __init__(self, path: Path | None, tool: str, argv: list[str], quick: bool, device: str,
                 echo: Callable[[str], None] | None = None):
        self.path, self.echo = path, echo
        self.record: dict = {"schema": SCHEMA, "tool": tool, "command": " ".join(["python -m " + tool, *argv]),
                             "quick": quick, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": device,
                             "torch": torch.__version__, "step_path": None, "parts": {}, "rows": []}
        self.save()

    def add(self, row: Row) -> None:
        self.record["rows"].append(row.to_dict())
        paths = [r["extra"]["step_path"] for r in self.record["rows"]  # a variant (the eager step) is not the run's
                 if r["extra"].get("step_path") and not r["extra"].get("variant")]
        self.record["step_path"] = ", ".join(dict.fromkeys(paths)) or None
        if self.echo is not None:
            shown = f"{fmt(row.value)} {row.unit}" if row.value is not None else f"- ({row.notes})"
            path = row.extra.get("step_path")
            self.echo(f"{row.id} = {shown}" + (f" [{path}]" if path else ""))
        self.save()

    def part(self, name: str, status: str) -> None:
        self.record["parts"][name] = status
        self.save()

    def set(self, key: str, value) -> None:
        self.record[key] = value
        self.save()

    def value(self, id: str) -> float | None:
        return next((r["value"] for r in self.record["rows"] if r["id"] == id), None)

    def save(self) -> None:
        if self.path is not None:
            from resnet_demo.base.storage import atomic_write_bytes

            atomic_write_bytes(self.path, (json.dumps(self.record, indent=1, default=str) + "\n").encode())


def machine() -> dict:
    from resnet_demo.base.device import cpu_model, gpu_summary

    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpu": gpu_summary(),
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if info["gpu"]:
        info["cuda"] = torch.version.cuda
    return info


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall seconds of fn() over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), samples


def find_real_data(data_dir: str | None) -> Path | None:
    """The genuine CIFAR-10: --data-dir, $RESNET_DEMO_DATA, ./data, then the repo's unpacked .cache/cifar10."""
    from resnet_demo.data.cifar import find_cifar10

    found = find_cifar10(data_dir)
    if found is None and data_dir is None and (REPO / ".cache" / "cifar10" / "test.npz").is_file():
        found = REPO / ".cache" / "cifar10"
    return found


class Workspace:
    """Temporary folders for one benchmark run: runs, stand-in data, a weights folder. Removed at the end."""

    def __init__(self, data_dir: str | None):
        self._tmp = tempfile.TemporaryDirectory(prefix="resnet-demo-bench-")
        self.root = Path(self._tmp.name)
        self.real_data = find_real_data(data_dir)
        self._data_dir: Path | None = None
        self._weights: tuple[Path, str] | None = None
        self._runs = 0

    def close(self) -> None:
        self._tmp.cleanup()

    def new_run_dir(self) -> Path:
        self._runs += 1
        return self.root / "runs" / f"run{self._runs}"

    def data_dir(self) -> tuple[Path, str]:
        """(folder with train.npz/test.npz, a note). Stand-in data of the real size when the genuine set is absent:
        speed does not depend on what the pixels show."""
        if self.real_data is not None:
            return self.real_data, "real CIFAR-10"
        if self._data_dir is None:
            from resnet_demo.data.cifar import save_npz_pair, synthetic_cifar10

            self._data_dir = save_npz_pair(synthetic_cifar10(50_000, 10_000, seed=0), self.root / "synthetic")
        return self._data_dir, "synthetic stand-in of CIFAR-10's size (no real data found)"

    def weights(self) -> tuple[Path, str]:
        """A weights folder with every shipped model, plus a random-init model for each paper depth not shipped."""
        if self._weights is None:
            self._weights = build_weights_dir(self.root / "weights")
        return self._weights


def build_weights_dir(directory: Path) -> tuple[Path, str]:
    from resnet_demo.nets.model import Arch, CifarResNet
    from resnet_demo.nets.paper import PRESET_DEPTHS
    from resnet_demo.store.manifest import write_manifest_entry
    from resnet_demo.store.registry import shipped_models, weights_dir
    from resnet_demo.store.weights import save_model

    directory.mkdir(parents=True, exist_ok=True)
    shipped = shipped_models()
    have = set()
    source = weights_dir()
    for e in shipped:  # link the shipped files (never copy or touch them), keep their records
        for key in ("file", "history", "predictions"):
            rel = e.record.get(key)
            if rel and (source / rel).is_file() and not (directory / rel).exists():
                (directory / rel).parent.mkdir(parents=True, exist_ok=True)
                (directory / rel).symlink_to((source / rel).resolve())
        write_manifest_entry(e.name, e.record, directory)
        if not e.arch.plain and e.arch.shortcut == "A":
            have.add(e.arch.depth)
    if (source / "test_images.npz").is_file():
        (directory / "test_images.npz").symlink_to((source / "test_images.npz").resolve())
    random_init = [d for d in PRESET_DEPTHS if d not in have]
    for depth in random_init:
        arch = Arch(depth)
        torch.manual_seed(depth)
        model = CifarResNet(arch).eval()
        sha = save_model(directory / f"{arch.name}.safetensors", model, arch)
        write_manifest_entry(arch.name, {**arch.to_dict(), "name": arch.name, "label": arch.label,
                                         "file": f"{arch.name}.safetensors", "sha256": sha}, directory)
    note = f"{len(shipped)} shipped model(s)"
    if random_init:
        note += f"; random-init stand-ins (right architecture, untrained) for ResNet-{', '.join(map(str, random_init))}"
    return directory, note


def synthetic_photo(width: int = 1024, height: int = 768, seed: int = 0) -> bytes:
    """A JPEG like a phone upload: smooth colour gradients plus noise, `width` x `height`."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 37 + yy / 53)], -1) * 200
    img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"
