"""Take a trained model away: safetensors (this project's format, loadable again here) or ONNX (Netron, other runtimes).

Either file says what it is and how to feed it: the architecture, the class names in output order, the input
shape and the normalisation, in the safetensors metadata or the ONNX model's metadata_props. The bytes are
the same on every export of the same weights: no timestamps, and weights.model_bytes writes the safetensors
header with sorted keys.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import torch

from resnet_demo.nets.model import CifarResNet
from resnet_demo.nets.paper import IMAGE_SIZE, MEAN, STD
from resnet_demo.store.registry import ModelEntry
from resnet_demo.store.weights import model_bytes

FORMATS = {"safetensors": ".safetensors", "onnx": ".onnx"}
ONNX_OPSET = 18
ONNX_PACKAGES = "onnx and onnxscript (pip install 'onnx>=1.17,<2' 'onnxscript>=0.7,<1')"


class ExportError(ValueError):
    """The model cannot be exported in the format asked for; the message says what to do."""


def metadata(entry: ModelEntry) -> dict:
    """What a user of the file needs to run it (JSON values; ONNX stores them as strings)."""
    classes = list(entry.classes)
    meta = {
        "name": entry.name,
        "label": entry.label,
        "arch": entry.arch.to_dict(),
        "classes": classes,
        "normalization": {"mean": list(MEAN), "std": list(STD)},
        "input": {"name": "image", "shape": ["N", 3, IMAGE_SIZE, IMAGE_SIZE], "layout": "NCHW", "dtype": "float32",
                  "color": "RGB", "preprocess": "(pixel / 255 - mean) / std, per channel"},
        "output": {"name": "logits", "shape": ["N", len(classes)],
                   "meaning": "one logit per class in the order of 'classes'; softmax gives probabilities"},
        "paper": "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. arXiv:1512.03385",
    }
    if entry.test_accuracy is not None:
        key = "cifar10_test_accuracy" if entry.is_cifar10 else "held_out_accuracy"
        meta[key] = round(float(entry.test_accuracy), 4)
    return meta


def filename(entry: ModelEntry, fmt: str) -> str:
    """A file name from the model's name: "run:2024-05-01" becomes "run-2024-05-01.onnx"."""
    stem = Path(entry.name).stem if entry.source == "file" else entry.name
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem) + FORMATS[fmt]


def safetensors_bytes(model: CifarResNet, entry: ModelEntry) -> bytes:
    extra = {k: v for k, v in metadata(entry).items() if k not in ("arch", "classes", "normalization")}  # already there
    return model_bytes(model, entry.arch, extra=extra)  # written with sorted keys: the same bytes every time


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_bytes(model: CifarResNet, entry: ModelEntry) -> bytes:
    """The graph with a dynamic batch dimension, input "image" (normalised), output "logits"."""
    if not onnx_available():
        raise ExportError(f"ONNX export needs {ONNX_PACKAGES}")
    import onnx

    model.eval()
    example = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its steps on stdout
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=ONNX_OPSET, verbose=False,
                                    input_names=["image"], output_names=["logits"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
    proto = program.model_proto
    data = "CIFAR-10" if entry.is_cifar10 else f"{len(entry.classes)} classes of its own"
    proto.doc_string = f"{entry.label} on {data} (He et al. 2015), exported from resnet_demo"
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {k: v if isinstance(v, str) else json.dumps(v)
                                        for k, v in metadata(entry).items()})
    return proto.SerializeToString(deterministic=True)


def export_bytes(entry: ModelEntry, fmt: str, model: CifarResNet | None = None) -> bytes:
    """The file's bytes; `model` is the entry's loaded model when the caller already has it."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "onnx" and not onnx_available():
        raise ExportError(f"ONNX export needs {ONNX_PACKAGES}")
    model = model if model is not None else entry.load()
    return safetensors_bytes(model, entry) if fmt == "safetensors" else onnx_bytes(model, entry)

