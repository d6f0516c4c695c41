"""Top-k prediction of one or more prepared inputs; shared by the CLI and the app."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from resnet_demo.nets.paper import CLASSES


@torch.inference_mode()
def probabilities(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax over the network's classes for a (B, 3, 32, 32) normalised batch."""
    model.eval()
    return F.softmax(model(x).float(), dim=1)


def top_k(probs: torch.Tensor, k: int = 5, classes: Sequence[str] = CLASSES) -> list[dict]:
    """[{"label", "index", "prob"}, ...] for one image's probability vector, most likely first. `classes`: the
    network's class names (model.classes); CIFAR-10's by default."""
    probs = probs.flatten()
    if len(classes) != probs.numel():
        raise ValueError(f"{probs.numel()} probabilities but {len(classes)} class names")
    k = max(1, min(int(k), len(classes)))
    values, indices = probs.topk(k)
    return [{"label": classes[i], "index": int(i), "prob": float(v)}
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)]
