"""Training speed: our engine (the real train(), timed from inside) against a typical tutorial pipeline.

Ours: resnet_demo.training.train.train() exactly as `python -m resnet_demo train` runs it (DeviceLoader, SGD, the
preset's autocast and memory format), stopped through its own should_stop hook. The hook is called before
every step, so it doubles as a clock: a timing window opens and closes on step boundaries, waits for the
GPU at both ends, and never spans an epoch's end (where train() evaluates the test set, which is not training).

Baseline: what a tutorial does: a Dataset of PIL images with torchvision's per-image transforms
(RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize) behind a torch DataLoader, fp32, Adam,
the same network. Both are reported as images per second: the median over several windows after a warm-up.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .common import Row, Workspace, figure_id, skipped


@dataclass
class Windows:
    warmup: int   # steps not timed (first batches, allocator and cuDNN autotuning, worker start-up)
    steps: int    # steps per timing window
    repeats: int  # windows; the median is reported


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class WindowClock:
    """A should_stop callback for train(): times `repeats` windows of `steps` steps; True once they are done.

    train() calls it before every step (and may call it once more at an epoch's end), so between two calls
    lies one step. A window during which an epoch ended (the 'epoch' event: the test set was evaluated)
    is thrown away and another one is opened.
    """

    def __init__(self, w: Windows, device: torch.device):
        self.w, self.device = w, device
        self.calls = 0
        self.open_at: tuple[int, float] | None = None
        self.epoch_ended = False
        self.discarded = 0
        self.windows: list[tuple[int, float]] = []  # (steps, seconds)

    def listener(self, event: dict) -> None:
        if event.get("type") == "epoch":
            self.epoch_ended = True

    def __call__(self) -> bool:
        self.calls += 1
        if self.open_at is not None:
            if self.epoch_ended:
                self.open_at, self.discarded = None, self.discarded + 1
            elif self.calls - self.open_at[0] == self.w.steps:
                _sync(self.device)
                self.windows.append((self.w.steps, time.perf_counter() - self.open_at[1]))
                self.open_at = None
        if len(self.windows) >= self.w.repeats:
            return True
        if self.open_at is None and self.calls > self.w.warmup:
            _sync(self.device)
            self.open_at, self.epoch_ended = (self.calls, time.perf_counter()), False
        return False


def _rate(windows: list[tuple[int, float]], batch: int) -> tuple[float, list[float]]:
    rates = [batch * n / s for n, s in windows]
    return statistics.median(rates), rates


def ours_throughput(ws: Workspace, depth: int, device: torch.device, preset: str, w: Windows,
                    step: str = "auto", eval_every: int = 1, compile: bool = False) -> tuple[float, dict]:
    from resnet_demo.base.device import precision_label, resolve_precision
    from resnet_demo.training.config import TrainConfig
    from resnet_demo.training.train import train

    data_dir, data_note = ws.data_dir()
    clock = WindowClock(w, device)
    start: dict = {}

    def listener(e: dict) -> None:
        if e.get("type") == "start":
            start.update(e)
        clock.listener(e)

    cfg = TrainConfig(depth=depth, preset=preset, device=str(device), data_dir=str(data_dir),
                      out=str(ws.new_run_dir()), download=False, step=step, eval_every=eval_every, compile=compile)
    end = train(cfg, listener=listener, should_stop=clock)
    if len(clock.windows) < w.repeats:
        raise RuntimeError(f"train() ended before the timing windows were complete: {end.get('message')}")
    value, rates = _rate(clock.windows, start["batch_size"])
    precision = precision_label(resolve_precision(cfg.precision, device))
    return value, {"batch_size": start["batch_size"], "preset": preset, "precision": precision, "rates": rates,
                   "data": data_note, "step_path": start.get("step_path"), "step_fallback": start.get("step_fallback"),
                   "windows": clock.windows, "discarded_windows": clock.discarded, "eval_every": eval_every,
                   "compile": compile,
                   "cudnn_benchmark": torch.backends.cudnn.benchmark if device.type == "cuda" else None}


class TutorialDataset(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10's way: one PIL image at a time through the transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        from torchvision import transforms

        from resnet_demo.nets.paper import MEAN, STD

        self.images, self.labels = images, labels
        self.transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def baseline_throughput(ws: Workspace, depth: int, device: torch.device, batch_size: int, workers: int,
                        w: Windows) -> tuple[float, dict]:
    from resnet_demo.data.cifar import load_cifar10
    from resnet_demo.nets.model import build_model

    data_dir, data_note = ws.data_dir()
    train_split = load_cifar10(str(data_dir)).train
    loader = torch.utils.data.DataLoader(TutorialDataset(train_split.images, train_split.labels), batch_size=batch_size,
                                         shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
                                         drop_last=True)
    needed = w.warmup + w.steps * w.repeats
    if needed > len(loader):
        raise ValueError(f"{needed} baseline steps do not fit one epoch of {len(loader)}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train() sets it for our engine: the comparison is not about it
    torch.manual_seed(0)
    model = build_model(depth).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    windows: list[tuple[int, float]] = []
    running_loss = 0.0
    it = iter(loader)
    t_open = 0.0
    for k in range(needed):
        if k >= w.warmup and (k - w.warmup) % w.steps == 0:
            if k > w.warmup:
                _sync(device)
                windows.append((w.steps, time.perf_counter() - t_open))
            _sync(device)
            t_open = time.perf_counter()
        x, y = next(it)
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()  # as tutorials do, to print the running loss
    _sync(device)
    windows.append((w.steps, time.perf_counter() - t_open))
    del it
    value, rates = _rate(windows, batch_size)
    return value, {"batch_size": batch_size, "workers": workers, "rates": rates, "data": data_note, "windows": windows,
                   "cudnn_benchmark": torch.backends.cudnn.benchmark if device.type == "cuda" else None}


def _row_ids(kind: str, depth: int) -> tuple[str, str, str]:
    """(ours, baseline, ratio): on a GPU the ids benchmarks.gpu writes too (figure_id), on the CPU train.cpu.*."""
    if kind == "cuda":
        return figure_id("throughput", depth), figure_id("throughput", depth, "baseline"), figure_id("ratio", depth)
    return f"train.cpu.r{depth}.ours", f"train.cpu.r{depth}.baseline", f"train.cpu.r{depth}.ratio"


def throughput_rows(ws: Workspace, depths: list[int], quick: bool, log) -> list[Row]:
    import os

    rows: list[Row] = []
    devices = [("cpu", torch.device("cpu"))]
    if torch.cuda.is_available():
        devices.append(("cuda", torch.device("cuda")))
    else:
        for depth in depths:
            rows.append(skipped(figure_id("ratio", depth), f"GPU training ResNet-{depth}: ours / baseline", "x",
                                ">= 13x", "no CUDA GPU (torch.cuda.is_available() is False)"))
    for kind, device in devices:
        target_ratio = 2.0 if kind == "cpu" else 13.0  # 20x the stretch goal
        # on a GPU as benchmarks.gpu measures it: the table6 preset (the fast recipe's batch), no per-epoch test
        preset, eval_every = ("classroom", 1) if kind == "cpu" else ("table6", 0)
        workers = 2 if kind == "cpu" else min(8, os.cpu_count() or 2)
        for depth in depths:
            ours_id, base_id, ratio_id = _row_ids(kind, depth)
            w = _windows(kind, depth, quick)
            log(f"  {kind} ResNet-{depth}: ours ({w.warmup} + {w.repeats} x {w.steps} steps) ...")
            ours, o = ours_throughput(ws, depth, device, preset, w, eval_every=eval_every)
            wb = _windows(kind, depth, quick, baseline=True)
            log(f"  {kind} ResNet-{depth}: baseline ({wb.warmup} + {wb.repeats} x {wb.steps} steps) ...")
            base, b = baseline_throughput(ws, depth, device, 128, workers, wb)
            how = f"median of {w.repeats} windows x {w.steps} steps after {w.warmup} warm-up"
            rows.append(Row(ours_id, f"{kind.upper()} training ResNet-{depth}: ours", ours, "img/s",
                            notes=f"train() with the {preset} preset, batch {o['batch_size']}, "
                                  f"{o['precision']}, channels_last, step {o['step_path']}; {how}; {o['data']}",
                            extra=o))
            rows.append(Row(base_id, f"{kind.upper()} training ResNet-{depth}: baseline", base, "img/s",
                            notes=f"PIL transforms + DataLoader(num_workers={workers}), fp32, Adam, batch 128; "
                                  f"median of {wb.repeats} windows x {wb.steps} steps after {wb.warmup} warm-up",
                            extra=b))
            ratio = ours / base
            rows.append(Row(ratio_id, f"{kind.upper()} training ResNet-{depth}: ours / baseline", ratio, "x",
                            f">= {target_ratio:g}x", ratio >= target_ratio, extra={"step_path": o["step_path"]}))
    return rows


def _windows(kind: str, depth: int, quick: bool, baseline: bool = False) -> Windows:
    """Step counts sized so the whole CPU section takes a few minutes on 2 cores (a 110-layer step is ~5x a
    20-layer one)."""
    if kind == "cuda":
        return Windows(5, 10, 2) if quick else Windows(30, 40, 5)
    if quick:
        return Windows(2, 3, 2) if depth <= 56 else Windows(1, 2, 2)
    steps = {20: 20, 56: 8, 110: 4}.get(depth, max(4, 400 // depth))
    return Windows(3 if baseline else 5, steps, 3)
