"""Block knockout: remove one block from a trained network and measure the accuracy that remains.

The paper's argument in one experiment: a ResNet's blocks learn small corrections on top of the identity, so
losing one costs little; a plain net's blocks each carry the whole signal, so losing one breaks the chain
(Veit, Wilber, Belongie 2016 did this on CIFAR-10 ResNets).

What "remove" means, block by block:
- a residual block keeps only its shortcut: relu(shortcut(x)), which for an identity shortcut is x itself
  (x is already a ReLU output) and where the shape changes is the block's own option-A or option-B map;
- a plain block whose input and output shapes match becomes the identity;
- a plain block that changes the shape (the first block of stages 2 and 3) has no identity to fall back on: it
  is replaced by the option-A map (subsample by 2, zero-pad the new channels), the same parameter-free map a
  ResNet's shortcut uses there, and `replacement()` says so.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from resnet_demo.interpret.anatomy import BlockInfo, block_infos, blocks, head, read_shipped_json, stem
from resnet_demo.nets.model import BasicBlock, CifarResNet, PadShortcut

IDENTITY, PAD, PROJECTION = "identity", "option-A shortcut", "option-B projection"
TABLE_FILE = "knockout.json"  # in weights/: the full-test-set table, measured by scripts/inside_tables.py


def _changes_shape(block: BasicBlock) -> bool:
    return block.conv1.stride != (1, 1) or block.conv1.in_channels != block.conv1.out_channels


def replacement(block: BasicBlock) -> str:
    """What is left in the block's place once it is removed."""
    if block.residual and block.shortcut is not None:
        return PAD if isinstance(block.shortcut, PadShortcut) else PROJECTION
    return PAD if _changes_shape(block) else IDENTITY


def bypass(block: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's output with the block removed (see the module docstring)."""
    if block.residual:
        return block.relu2(x if block.shortcut is None else block.shortcut(x))
    if _changes_shape(block):
        return PadShortcut(block.conv1.in_channels, block.conv1.out_channels)(x)
    return x


class Bypass(nn.Module):
    """A removed block: what bypass() leaves, as a module, so a whole network can run without the block."""

    def __init__(self, block: BasicBlock):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bypass(self.block, x)


def without_block(model: CifarResNet, index: int) -> CifarResNet:
    """A copy of the model with block `index` (forward order) replaced by Bypass; the original is untouched."""
    info = block_infos(model)[index]
    clone = copy.deepcopy(model)
    layer = getattr(clone, f"layer{info.stage}")
    layer[info.position - 1] = Bypass(layer[info.position - 1])
    return clone.eval()


@torch.inference_mode()
def knockout_logits(model: CifarResNet, x: torch.Tensor, only: Iterable[int] | None = None,
                    intact: bool = True) -> tuple[torch.Tensor | None, dict[int, torch.Tensor]]:
    """(intact logits or None, {block index: logits with that block removed}) for one normalised batch.

    Blocks 0..k-1 are shared by knockout k and the intact pass, so they run once: the intact activation walks
    forward block by block, and each knockout branches off it and runs only the blocks after k. All K
    knockouts cost about K/2 full passes instead of K; one knockout without the intact logits costs one pass.
    """
    model.eval()
    chain = blocks(model)
    wanted = set(range(len(chain)) if only is None else only)
    if not wanted <= set(range(len(chain))):
        raise ValueError(f"blocks {sorted(wanted - set(range(len(chain))))} do not exist; the network has "
                         f"{len(chain)} blocks (0..{len(chain) - 1})")
    last = len(chain) if intact else max(wanted, default=-1) + 1
    a = stem(model, x)
    knocked = {}
    for k, block in enumerate(chain[:last]):
        if k in wanted:
            out = bypass(block, a)
            for later in chain[k + 1:]:
                out = later(out)
            knocked[k] = head(model, out)
        if k + 1 < last:
            a = block(a)
    return (head(model, chain[-1](a)) if intact else None), knocked


@dataclass
class Counts:
    """Running totals of a knockout table: plain integers, so a long measurement can be saved and resumed."""

    images: int = 0
    intact_correct: int = 0
    correct: dict[int, int] = field(default_factory=dict)  # block index -> images right without it
    changed: dict[int, int] = field(default_factory=dict)  # block index -> images whose top-1 changed

    def add(self, model: CifarResNet, x: torch.Tensor, y: torch.Tensor, wanted: list[int]) -> None:
        intact, knocked = knockout_logits(model, x, wanted)
        base = intact.argmax(1)
        self.intact_correct += int((base == y).sum())
        for k, logits in knocked.items():
            pred = logits.argmax(1)
            self.correct[k] = self.correct.get(k, 0) + int((pred == y).sum())
            self.changed[k] = self.changed.get(k, 0) + int((pred != base).sum())
        self.images += len(y)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Counts:
        return cls(int(d["images"]), int(d["intact_correct"]), {int(k): int(v) for k, v in d["correct"].items()},
                   {int(k): int(v) for k, v in d["changed"].items()})


def knockout_table(model: CifarResNet, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   only: Iterable[int] | None = None, progress: Callable[[Counts], None] | None = None,
                   counts: Counts | None = None) -> dict:
    """Accuracy with each block removed, over (normalised images, labels) batches.

    "changed" is the fraction of images whose top-1 differs from the intact network's, right or wrong.
    `counts` continues an earlier measurement (the batches are then the images it has not seen yet);
    `progress` gets the running counts after every batch, to save them.
    """
    infos = block_infos(model)
    chain = blocks(model)
    wanted = sorted(set(range(len(chain)) if only is None else only))
    counts = counts or Counts()
    for x, y in batches:
        counts.add(model, x, y, wanted)
        if progress is not None:
            progress(counts)
    n = counts.images
    if not n:
        raise ValueError("no images to measure the knockouts on")
    return {
        "images": n,
        "intact_accuracy": counts.intact_correct / n,
        "blocks": [_row(infos[k], chain[k], counts.correct[k] / n, counts.changed[k] / n) for k in wanted],
    }


@torch.inference_mode()
def predict_without(model: CifarResNet, batches: Iterable[torch.Tensor], index: int | None) -> np.ndarray:
    """Top-1 class of every image with block `index` removed (None: the intact network), as int64."""
    model.eval()
    preds = []
    for x in batches:
        logits = model(x) if index is None else knockout_logits(model, x, [index], intact=False)[1][index]
        preds.append(logits.argmax(1).numpy())
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def read_table(directory: Path | None = None) -> dict | None:
    """The shipped knockout table (scripts/inside_tables.py knockout), or None if there is none."""
    return read_shipped_json(TABLE_FILE, directory)


def _row(info: BlockInfo, block: BasicBlock, accuracy: float, changed: float) -> dict:
    return {"block": info.label, "index": info.index, "stage": info.stage, "position": info.position,
            "downsamples": info.downsamples, "replacement": replacement(block), "accuracy": float(accuracy),
            "changed": float(changed)}
