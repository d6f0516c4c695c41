"""What happens inside a trained network: stage activations, each block's F(x) and shortcut, Fig. 7's stds.

Everything here reads the model through forward hooks on its existing modules, so it works on any weights
(shipped, a finished run, random) without a second copy of the forward pass that could drift from model.py.

Fig. 7 of the paper plots the standard deviation of every 3x3 layer's response "after BN and before other
nonlinearity (ReLU/addition)": here the stem's BN and both BNs of every block (6n+1 layers), in forward
order. The std is taken over every value of the response (images x channels x positions), merged over chunks
in float64 so a long pass over the test set in chunks gives the same figure as one pass.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from resnet_demo.nets.model import STAGE_WIDTHS, BasicBlock, CifarResNet
from resnet_demo.store.registry import weights_dir


@dataclass(frozen=True)
class BlockInfo:
    """One basic block's place in the network, for labels and for what removing it leaves behind."""

    index: int  # 0-based, in forward order
    stage: int  # 1, 2, 3
    position: int  # 1-based within its stage
    module: str  # "layer2.0": its name in the state dict
    downsamples: bool  # the first block of stages 2 and 3: 16->32 or 32->64 channels, map halved

    @property
    def label(self) -> str:
        return f"{self.stage}.{self.position}"


def blocks(model: CifarResNet) -> list[BasicBlock]:
    return [*model.layer1, *model.layer2, *model.layer3]


def block_infos(model: CifarResNet) -> list[BlockInfo]:
    out = []
    for s, layer in enumerate((model.layer1, model.layer2, model.layer3), start=1):
        for j, b in enumerate(layer):
            out.append(BlockInfo(index=len(out), stage=s, position=j + 1, module=f"layer{s}.{j}",
                                 downsamples=b.conv1.stride != (1, 1) or b.conv1.in_channels != b.conv1.out_channels))
    return out


def stem(model: CifarResNet, x: torch.Tensor) -> torch.Tensor:
    """The input of the first block."""
    return model.relu(model.bn1(model.conv1(x)))


def head(model: CifarResNet, features: torch.Tensor) -> torch.Tensor:
    """Logits from the last block's output."""
    return model.fc(torch.flatten(model.pool(features), 1))


def shortcut(block: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    """The shortcut branch of a residual block: x itself, or its option-A/B map where the shape changes."""
    if not block.residual:
        raise ValueError("a plain block has no shortcut")
    return x if block.shortcut is None else block.shortcut(x)


def residual_branch(block: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    """F(x): conv-BN-ReLU-conv-BN, before the addition and the final ReLU (the whole block, in a plain net)."""
    return block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(x)))))


# --- Fig. 7 ------------------------------------------------------------------------------------------------

FIG7_FILE = "fig7.json"  # in weights/: measured on the full test set by scripts/inside_tables.py fig7


def read_shipped_json(name: str, directory: Path | None = None) -> dict | None:
    """A small measured table shipped in weights/, or None if it is not there; ValueError if it is damaged."""
    path = (directory or weights_dir()) / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is unreadable: {e}") from e


def read_fig7(directory: Path | None = None) -> dict | None:
    return read_shipped_json(FIG7_FILE, directory)


def response_layers(model: CifarResNet) -> list[tuple[str, nn.BatchNorm2d]]:
    """(name, BN) of every 3x3 layer in forward order: the stem, then conv1 and conv2 of every block."""
    layers = [("stem", model.bn1)]
    for info, b in zip(block_infos(model), blocks(model)):
        layers += [(f"{info.label}a", b.bn1), (f"{info.label}b", b.bn2)]
    return layers


class _Moments:
    """The std of everything seen, chunk by chunk: each chunk's mean and variance (float32, in one pass over the
    tensor, no copy) merged in float64 with Chan et al.'s pairwise update, so chunking does not change it."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, t: torch.Tensor) -> None:
        var, mean = torch.var_mean(t.detach(), correction=0)
        n, mean, m2 = t.numel(), float(mean), float(var) * t.numel()
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.n))


@torch.inference_mode()
def response_stds(model: CifarResNet, batches) -> dict:
    """{"layers": names, "std": one float per 3x3 layer} over every normalised batch (B, 3, 32, 32) given."""
    model.eval()
    layers = response_layers(model)
    moments = [_Moments() for _ in layers]
    hooks = [bn.register_forward_hook(lambda _m, _i, out, acc=acc: acc.add(out))
             for (_, bn), acc in zip(layers, moments)]
    images = 0
    try:
        for x in batches:
            model(x)
            images += len(x)
    finally:
        for h in hooks:
            h.remove()
    if not images:
        raise ValueError("no images to measure the responses on")
    return {"layers": [name for name, _ in layers], "std": [m.std for m in moments], "images": images}


# --- feature maps and the F(x) + x decomposition -----------------------------------------------------------

@dataclass
class BlockParts:
    """One block on one image: the residual branch F(x), the shortcut x (None in a plain net), their sum."""

    info: BlockInfo
    residual: np.ndarray  # (C, H, W) F(x)
    shortcut: np.ndarray | None  # (C, H, W) x, or its option-A/B map
    total: np.ndarray  # (C, H, W) F(x) + x, before the block's final ReLU
    output: np.ndarray  # (C, H, W) the block's output, after the ReLU

    @staticmethod
    def rms(a: np.ndarray | None, channel: int | None = None) -> float | None:
        if a is None:
            return None
        a = a if channel is None else a[channel]
        return float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))


@dataclass
class Anatomy:
    """One image through one model: the stem, each stage's output and every block's parts."""

    stem: np.ndarray  # (16, 32, 32)
    stages: list[np.ndarray]  # [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    parts: list[BlockParts]
    logits: np.ndarray  # (10,)


@torch.inference_mode()
def dissect(model: CifarResNet, x: torch.Tensor) -> Anatomy:
    """Run one normalised image (1, 3, 32, 32) and keep what each part of the network made of it.

    Hooks on each block record its input and output; F(x) and the shortcut are recomputed from the input with
    the block's own modules (a few ms), so the figures are exactly what the block adds up.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"dissect takes one image, shape (1, 3, 32, 32); got {tuple(x.shape)}")
    model.eval()
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [b.register_forward_hook(lambda _m, inp, out, i=i: seen.__setitem__(i, (inp[0], out)))
             for i, b in enumerate(blocks(model))]
    stem_out: list[torch.Tensor] = []
    hooks.append(model.relu.register_forward_hook(lambda _m, _i, out: stem_out.append(out)))
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    parts = []
    for info, b in zip(block_infos(model), blocks(model)):
        inp, out = seen[info.index]
        f = residual_branch(b, inp)
        s = shortcut(b, inp) if b.residual else None
        total = f + s if s is not None else f
        parts.append(BlockParts(info, f[0].numpy(), None if s is None else s[0].numpy(), total[0].numpy(),
                                out[0].numpy()))
    n = len(model.layer1)
    stages = [parts[(s + 1) * n - 1].output for s in range(len(STAGE_WIDTHS))]
    return Anatomy(stem=stem_out[0][0].numpy(), stages=stages, parts=parts, logits=logits[0].numpy())


def tile(maps: np.ndarray, columns: int | None = None, gap: int = 1) -> np.ndarray:
    """(C, H, W) -> one 2-D mosaic of the C maps, each scaled to 0..1 on its own, NaN in the gaps.

    Each map gets its own scale because channels differ in range by orders of magnitude; the gaps are NaN so a
    colour map can draw them as background.
    """
    c, h, w = maps.shape
    columns = columns or int(np.ceil(np.sqrt(c)))
    rows = -(-c // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan, np.float32)
    lo = maps.reshape(c, -1).min(1)
    hi = maps.reshape(c, -1).max(1)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (maps - lo[:, None, None]) / span[:, None, None]
    for i in range(c):
        r, k = divmod(i, columns)
        out[r * (h + gap): r * (h + gap) + h, k * (w + gap): k * (w + gap) + w] = scaled[i]
    return out

