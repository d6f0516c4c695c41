"""`python -m resnet_demo train` as a person runs it: failures are one "error:" line and a non-zero exit."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet_demo", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "RESNET_DEMO_OFFLINE": "1", **env}, timeout=300)


def test_train_without_data_names_where_it_looked(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RESNET_DEMO_DATA"}
    proc = subprocess.run([sys.executable, "-m", "resnet_demo", "train", "--depth", "8", "--device", "cpu",
                           "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**env, "PYTHONPATH": str(ROOT), "RESNET_DEMO_OFFLINE": "1"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "error: CIFAR-10 not found (looked in: " in proc.stderr and str(tmp_path / "nowhere") in proc.stderr


def test_train_refusals_are_clear(tmp_path, synthetic_data_dir):
    proc = run("train", "--depth", "9", cwd=tmp_path)
    assert proc.returncode == 2 and "6n+2" in proc.stderr and "nearest valid depths: 8 or 14" in proc.stderr
    if not torch.cuda.is_available():
        proc = run("train", "--depth", "8", "--device", "cuda", "--data-dir", str(synthetic_data_dir),
                   "--out", str(tmp_path / "r"), cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "error: --device cuda was asked for, but PyTorch sees no CUDA GPU" in proc.stderr


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--batch-size", "-1"], ["--preset", "imagenet"],
                                  ["--checkpoint-minutes", "-1"], ["--checkpoint-minutes", "nan"]])
def test_bad_numbers_are_usage_errors(argv, capsys):
    from resnet_demo import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["train", *argv])
    assert e.value.code == 2 and "error:" in capsys.readouterr().err


def test_progress_header_names_device_and_precision(capsys):
    # The first line a user sees says what the run will cost: device, steps, batch, and the precision it trains in.
    from resnet_demo.cli import ProgressPrinter

    printer = ProgressPrinter(quiet=True)
    start = {"type": "start", "label": "ResNet-20", "params": 269_722, "device": "AMD EPYC, 2 threads", "epochs": 3,
             "steps_per_epoch": 390, "batch_size": 128, "train_images": 50_000, "total_steps": 1170,
             "resumed_from_step": 120, "config": {"precision_used": "bf16 autocast"}}
    printer(start)
    assert capsys.readouterr().err.strip() == ("ResNet-20 (269,722 params) on AMD EPYC, 2 threads: 3 epochs x 390 steps, "
                                               "batch 128, 50,000 train images, bf16 autocast, resuming at step 120")
    printer({**start, "config": {}, "resumed_from_step": None})  # an older event file without the field
    assert capsys.readouterr().err.strip().endswith("50,000 train images")
