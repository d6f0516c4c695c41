"""resnet_demo.store.export and `python -m resnet_demo export`: a model leaves as safetensors or ONNX with what it
needs to be used (architecture, classes, input shape, normalisation), the same bytes every time, and the ONNX
file gives the same answers as PyTorch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_demo.nets.model import Arch, build_model
from resnet_demo.nets.paper import CLASSES, MEAN, STD
from resnet_demo.store import export
from resnet_demo.store.registry import resolve, shipped_models
from resnet_demo.store.weights import load_model, save_model

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`python -m resnet_demo ...` in a new process, as a person runs it."""
    return subprocess.run([sys.executable, "-m", "resnet_demo", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "RESNET_DEMO_OFFLINE": "1",
                               "RESNET_DEMO_WEIGHTS": str(WEIGHTS), **env}, timeout=300)


@pytest.fixture
def main(tmp_path, monkeypatch):
    """The same command in this process: `cli.main`, which `python -m resnet_demo` calls and whose return value is
    its exit status, run from tmp_path with the repository's weights. It spares a new interpreter importing torch
    (several seconds on a loaded 2-core machine) where the test is about the export, not about the process; the
    one property that needs two processes (byte-identical files) still compares two."""
    from resnet_demo import cli as cli_module

    monkeypatch.setenv("RESNET_DEMO_WEIGHTS", str(WEIGHTS))
    monkeypatch.chdir(tmp_path)
    return cli_module.main


@pytest.fixture
def random_file(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "mine.safetensors"
    save_model(path, build_model(8, plain=True), Arch(8, plain=True))
    return path


def test_safetensors_export_loads_back_with_its_metadata(random_file, tmp_path):
    entry = resolve(str(random_file))
    data = export.export_bytes(entry, "safetensors")
    out = tmp_path / export.filename(entry, "safetensors")
    assert out.name == "mine.safetensors"
    out.write_bytes(data)
    model, meta = load_model(out)
    original, _ = load_model(random_file)
    for k, v in original.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)
    assert meta["arch"] == Arch(8, plain=True)
    assert meta["classes"] == list(CLASSES) and meta["normalization"] == {"mean": list(MEAN), "std": list(STD)}
    assert meta["input"]["shape"] == ["N", 3, 32, 32] and meta["output"]["shape"] == ["N", 10]
    assert meta["label"] == "Plain-8" and meta["name"] == str(random_file)


def test_safetensors_export_is_byte_identical_across_processes(random_file, tmp_path, main, capsys):
    """The safetensors library orders its metadata differently in every process; the export must not. One export
    runs in a new process, the other in this one: two processes, as before, with one interpreter start fewer."""
    proc = cli("export", str(random_file), "--out", str(tmp_path / "0.safetensors"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"exported Plain-8 ({random_file}) to {tmp_path / '0.safetensors'}: safetensors" in proc.stdout
    assert main(["export", str(random_file), "--out", str(tmp_path / "1.safetensors")]) == 0
    assert f"exported Plain-8 ({random_file}) to {tmp_path / '1.safetensors'}: safetensors" in capsys.readouterr().out
    assert (tmp_path / "0.safetensors").read_bytes() == (tmp_path / "1.safetensors").read_bytes()
    assert load_model(tmp_path / "0.safetensors")[1]["arch"] == Arch(8, plain=True)


def test_a_finished_run_exports_by_its_name(tiny_run, tmp_path, main, monkeypatch):
    monkeypatch.setenv("RESNET_DEMO_RUNS", str(tiny_run.parent))
    assert main(["export", f"run:{tiny_run.name}"]) == 0
    out = tmp_path / f"run-{tiny_run.name}.safetensors"
    model, meta = load_model(out)
    assert meta["arch"] == Arch(8) and meta["name"] == f"run:{tiny_run.name}"
    assert meta["label"] == f"ResNet-8 · run {tiny_run.name}"


def test_cli_refusals_are_one_line(main, capsys):
    assert main(["export", "no-such-model", "--format", "onnx"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no model named 'no-such-model'") and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        main(["export", "plain20", "--format", "tflite"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(export.ExportError, match="unknown export format"):
        export.export_bytes(resolve_shipped("plain20"), "tflite")


def resolve_shipped(name: str):
    return next(e for e in shipped_models(WEIGHTS) if e.name == name)


def test_filenames_are_safe():
    entry = resolve_shipped("plain20")
    assert export.filename(entry, "onnx") == "plain20.onnx"
    entry.name = "run:2024-05-01 12:00"
    entry.source = "run"
    assert export.filename(entry, "safetensors") == "run-2024-05-01-12-00.safetensors"


# --- ONNX ------------------------------------------------------------------------------------------------------

def test_onnx_export_matches_pytorch_on_every_shipped_test_image(tmp_path, main):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    import onnx

    from resnet_demo.data.loader import normalize
    from resnet_demo.data.testimages import read_test_images

    entry = resolve_shipped("resnet20-e100")
    assert main(["export", "resnet20-e100", "--format", "onnx", "--out", str(tmp_path / "r20.onnx")]) == 0
    data = (tmp_path / "r20.onnx").read_bytes()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["arch"]) == {"depth": 20, "plain": False, "shortcut": "A"}
    assert json.loads(meta["classes"]) == list(CLASSES)
    assert json.loads(meta["normalization"]) == {"mean": list(MEAN), "std": list(STD)}
    assert json.loads(meta["input"])["shape"] == ["N", 3, 32, 32] and meta["name"] == "resnet20-e100"

    images = read_test_images(WEIGHTS)
    x = normalize(torch.from_numpy(np.stack([img for img, _ in images.values()])).permute(0, 3, 1, 2))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    model = entry.load()
    onnx_top1, torch_top1 = [], []
    with torch.inference_mode():
        for chunk in x.split(500):  # a dynamic batch: 500, and the remainder
            onnx_top1.append(session.run(["logits"], {"image": chunk.numpy()})[0].argmax(1))
            torch_top1.append(model(chunk).argmax(1).numpy())
    onnx_top1, torch_top1 = np.concatenate(onnx_top1), np.concatenate(torch_top1)
    assert len(onnx_top1) == len(images) > 2000
    assert (onnx_top1 == torch_top1).all(), f"{(onnx_top1 != torch_top1).sum()} images differ"


def test_onnx_export_is_deterministic(random_file):
    pytest.importorskip("onnxscript")
    entry = resolve(str(random_file))
    assert export.export_bytes(entry, "onnx") == export.export_bytes(entry, "onnx")


def test_onnx_without_the_packages_says_what_to_install(random_file, monkeypatch):
    monkeypatch.setattr(export, "onnx_available", lambda: False)
    with pytest.raises(export.ExportError, match="pip install"):
        export.export_bytes(resolve(str(random_file)), "onnx")
