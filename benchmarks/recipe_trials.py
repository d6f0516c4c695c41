"""`python -m benchmarks.recipe_trials`: one short training run with one recipe idea switched on, for ablations.

    python -m benchmarks.recipe_trials --data-dir DIR --epochs 20 --out trial.json [--wd 1e-3] [--ema 0.998] ...

The `table6` recipe (Nesterov SGD, lr 0.2 at batch 256, weight decay 5e-4, label smoothing 0.1, 15 % warm-up then
cosine to zero) on the paper's ResNet, with the knobs docs/GPU.md ("Fewer epochs") reports on: an exponential
moving average of the weights, zero-initialised last BatchNorm in each block, no weight decay on BatchNorm and
biases (or another lr for them), flips that alternate by epoch, the crop padding, a linear decay, and precision.
It is a separate loop on purpose: the product's trainer keeps only what helped (none of these did), and this
one keeps the knobs so that each measurement in the docs can be run again. The batches are drawn as the
product's loader draws them (a permutation, crop offsets and flips from a generator seeded by seed and epoch).

Each epoch prints one JSON line (train loss, seconds, test accuracy every --eval-every epochs, in the training
precision); the end writes --out with the final fp32 accuracy on all 10,000 test images, the per-epoch curve and
the final accuracy of averages of the weights kept alongside (--track), so an average costs no extra run.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from resnet_demo.base.storage import atomic_write_json
from resnet_demo.data.cifar import load_cifar10
from resnet_demo.data.loader import channel_stats, normalize
from resnet_demo.nets.model import Arch, BasicBlock, CifarResNet


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.recipe_trials", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="the genuine CIFAR-10 (train.npz/test.npz or torchvision's)")
    p.add_argument("--out", required=True, help="the JSON record to write")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.2, help="peak learning rate")
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--ls", type=float, default=0.1, help="label smoothing")
    p.add_argument("--warmup", type=float, default=0.15, help="fraction of the steps warming up from lr/10")
    p.add_argument("--sched", choices=("cos", "lin"), default="cos", help="decay after the warm-up, to zero")
    p.add_argument("--pad", type=int, default=4, help="random-crop padding")
    p.add_argument("--ema", type=float, default=0.0, help="evaluate an EMA of the weights (decay per step; 0: off)")
    p.add_argument("--track", default="0.99,0.995,0.998",
                   help="EMA decays kept alongside and scored at the end (warm-up min(d, (1+t)/(10+t)))")
    p.add_argument("--zero-bn", action="store_true", help="zero-initialise each block's last BatchNorm scale")
    p.add_argument("--nowd-bn", action="store_true", help="no weight decay on BatchNorm parameters and biases")
    p.add_argument("--bn-lr", type=float, default=1.0, help="lr multiplier for BatchNorm parameters and biases")
    p.add_argument("--alt-flip", action="store_true", help="flip each image every other epoch, not at random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--eval-every", type=int, default=1)
    return p.parse_args(argv)


class Batches:
    """The training set padded once; each epoch's crops and flips drawn from a generator seeded by (seed, epoch)."""

    def __init__(self, images, labels, a: argparse.Namespace):
        self.a, self.pad = a, a.pad
        self.images = F.pad(torch.from_numpy(images), (0, 0, a.pad, a.pad, a.pad, a.pad))
        self.labels = torch.from_numpy(labels)
        self.n, self.steps = len(labels), len(labels) // a.batch
        self.stats, self.ar = channel_stats("cpu"), torch.arange(32)
        self.base_flips = torch.rand(self.n, generator=torch.Generator().manual_seed(a.seed * 7919 + 17)) < 0.5

    def draw(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The epoch's order, crop offsets and flips (by image index)."""
        g = torch.Generator().manual_seed(self.a.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        offsets = torch.randint(0, 2 * self.pad + 1, (self.n, 2), generator=g)
        flips = self.base_flips ^ bool(epoch % 2) if self.a.alt_flip else torch.rand(self.n, generator=g) < 0.5
        return perm, offsets, flips

    def epoch(self, epoch: int):
        perm, offsets, flips = self.draw(epoch)
        for b in range(self.steps):
            j = perm[b * self.a.batch:(b + 1) * self.a.batch]
            dy, dx, flip = offsets[j, 0], offsets[j, 1], flips[j]
            rows = dy[:, None] + self.ar
            cols = torch.where(flip[:, None], dx[:, None] + 31 - self.ar, dx[:, None] + self.ar)
            x = self.images[j[:, None, None], rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
            yield normalize(x, stats=self.stats).contiguous(memory_format=torch.channels_last), self.labels[j]


def build(a: argparse.Namespace) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(a.seed)
    model = CifarResNet(Arch(depth=a.depth)).to(memory_format=torch.channels_last)
    if a.zero_bn:
        for m in model.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
    decay = [p for p in model.parameters() if p.ndim > 1]
    other = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": a.wd, "lr_scale": 1.0},
              {"params": other, "weight_decay": 0.0 if a.nowd_bn else a.wd, "lr_scale": a.bn_lr}]
    return model, torch.optim.SGD(groups, lr=a.lr, momentum=0.9, nesterov=True)


def lr_at(step: int, total: int, a: argparse.Namespace) -> float:
    warm = max(1, int(a.warmup * total))
    if step < warm:
        return a.lr * (0.1 + 0.9 * step / warm)
    t = min(1.0, (step - warm) / max(1, total - warm))
    return a.lr * (0.5 * (1 + math.cos(math.pi * t)) if a.sched == "cos" else 1 - t)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), 500):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            correct += int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum())
    model.train()
    return correct / len(y)


@torch.no_grad()
def blend(average: nn.Module, model: nn.Module, decay: float) -> None:
    for e, m in zip(average.state_dict().values(), model.state_dict().values(), strict=True):
        e.lerp_(m, 1 - decay) if e.dtype.is_floating_point else e.copy_(m)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    data = load_cifar10(a.data_dir)
    batches = Batches(data.train.images, data.train.labels, a)
    test_x = normalize(torch.from_numpy(data.test.images).permute(0, 3, 1, 2)).contiguous(
        memory_format=torch.channels_last)
    test_y = torch.from_numpy(data.test.labels)
    model, opt = build(a)
    ema = copy.deepcopy(model) if a.ema else None
    tracked = {float(d): copy.deepcopy(model) for d in a.track.split(",") if d}
    bf16, total, step, hist, t0 = a.precision == "bf16", batches.steps * a.epochs, 0, [], time.time()
    for epoch in range(a.epochs):
        loss_sum = 0.0
        for x, y in batches.epoch(epoch):
            lr = lr_at(step, total, a)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_scale"]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x).float(), y, label_smoothing=a.ls)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item()
            if ema is not None:
                blend(ema, model, a.ema)
            for d, m in tracked.items():
                blend(m, model, min(d, (1 + step) / (10 + step)))
        rec = {"epoch": epoch + 1, "train_loss": loss_sum / batches.steps, "seconds": round(time.time() - t0, 1)}
        if (epoch + 1) % a.eval_every == 0 or epoch + 1 == a.epochs:
            rec["test_acc"] = accuracy(model, test_x, test_y, bf16)
            if ema is not None:
                rec["test_acc_ema"] = accuracy(ema, test_x, test_y, bf16)
        hist.append(rec)
        print(json.dumps(rec), flush=True)
    out = {"args": {k: v for k, v in vars(a).items() if k not in ("data_dir", "out")},
           "final": accuracy(model, test_x, test_y, False), "history": hist, "seconds": round(time.time() - t0, 1),
           "tracked_averages": {str(d): accuracy(m, test_x, test_y, False) for d, m in tracked.items()}}
    if ema is not None:
        out["final_ema"] = accuracy(ema, test_x, test_y, False)
    atomic_write_json(Path(a.out), out)
    print(f"final {100 * out['final']:.2f}% (fp32, 10,000 test images) in {out['seconds']:.0f} s; wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
