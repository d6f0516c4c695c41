"""Test-set evaluation: accuracy, per-class accuracy, confusion matrix, and every image's prediction.

The classes are the split's (CIFAR-10's ten, or those a network was taught); a network is evaluated only on
images labelled with its own classes, in its own order (cifar.select_classes picks and relabels them)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from resnet_demo.base import faults
from resnet_demo.base.storage import atomic_write_bytes
from resnet_demo.data.cifar import Split
from resnet_demo.data.loader import DeviceLoader, eval_batch_size
from resnet_demo.nets.model import classes_of
from resnet_demo.nets.paper import CLASSES


@torch.inference_mode()
def _predict(model: torch.nn.Module, split: Split, device, batch_size: int | None,
             flip: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(softmax of each image, softmax of its mirror image or None): one pass over the data for both."""
    model.eval()
    loader = DeviceLoader(split, batch_size or eval_batch_size(device), device=device, train=False)
    plain, mirrored = [], []
    for x, _ in loader.epoch():
        faults.point("evaluate")
        plain.append(F.softmax(model(x).float(), dim=1).cpu())
        if flip:
            mirrored.append(F.softmax(model(x.flip(3)).float(), dim=1).cpu())
    empty = np.zeros((0, len(classes_of(model))), np.float32)
    join = lambda ps: torch.cat(ps).numpy() if ps else empty  # noqa: E731
    return join(plain), (join(mirrored) if flip else None)


def predict_probs(model: torch.nn.Module, split: Split, device: str | torch.device = "cpu",
                  batch_size: int | None = None, flip_tta: bool = False) -> np.ndarray:
    """Softmax probabilities (N, classes), float32. flip_tta averages with the mirrored image's probabilities."""
    p, p_flip = _predict(model, split, device, batch_size, flip_tta)
    return p if p_flip is None else (p + p_flip) / 2


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int = len(CLASSES)) -> np.ndarray:
    """(k, k) image counts; rows: true class, columns: predicted class."""
    k = num_classes
    return np.bincount(labels.astype(np.int64) * k + pred.astype(np.int64), minlength=k * k).reshape(k, k)


def per_class_accuracy(confusion: np.ndarray,
                       classes: tuple[str, ...] | list[str] = CLASSES) -> dict[str, float | None]:
    """{class name: accuracy}, None for a class with no test image."""
    if len(classes) != len(confusion):
        raise ValueError(f"a {len(confusion)}-class confusion matrix but {len(classes)} class names")
    n = confusion.sum(1)
    return {c: (float(confusion[i, i] / n[i]) if n[i] else None) for i, c in enumerate(classes)}


def summarize(probs: np.ndarray, labels: np.ndarray, classes: tuple[str, ...] | list[str] = CLASSES) -> dict:
    if probs.shape[1] != len(classes):
        raise ValueError(f"{probs.shape[1]} probabilities per image but {len(classes)} class names")
    pred = probs.argmax(1)
    confusion = confusion_matrix(pred, labels, len(classes))
    per_class = per_class_accuracy(confusion, classes)
    nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))
    return {
        "accuracy": float((pred == labels).mean()) if len(labels) else 0.0,
        "loss": float(nll.mean()) if len(labels) else 0.0,
        "n": int(len(labels)),
        "per_class": per_class,
        "confusion": confusion.tolist(),  # rows: true class, columns: predicted class
    }


def evaluate(model: torch.nn.Module, split: Split, device: str | torch.device = "cpu", flip_tta: bool = False,
             batch_size: int | None = None) -> dict:
    """The single-view summary; with flip_tta, the flip-averaged accuracy is reported beside it, never instead.
    The split's classes must be the network's (ValueError otherwise)."""
    if tuple(split.classes) != classes_of(model):
        raise ValueError(f"the network knows {_few(classes_of(model))}, but the images are labelled "
                         f"{_few(split.classes)}")
    probs, mirrored = _predict(model, split, device, batch_size, flip_tta)  # 2 passes with flip_tta, not 3
    result = summarize(probs, split.labels, split.classes)
    result["probs"] = probs
    if mirrored is not None:
        result["accuracy_flip_tta"] = summarize((probs + mirrored) / 2, split.labels, split.classes)["accuracy"]
    return result


def _few(names: tuple[str, ...]) -> str:
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def save_predictions(path: str | os.PathLike, probs: np.ndarray, labels: np.ndarray) -> None:
    """The compact per-image record kept with each model (preds.npz, about 200 kB for 10,000 images)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, labels=labels.astype(np.uint8), pred=probs.argmax(1).astype(np.uint8),
                        probs=probs.astype(np.float16))
    atomic_write_bytes(path, buf.getvalue())


def load_predictions(path: str | os.PathLike | None) -> dict[str, np.ndarray] | None:
    """{"labels", "pred", "probs"} of a preds.npz, or None when there is none."""
    if path is None or not Path(path).is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
