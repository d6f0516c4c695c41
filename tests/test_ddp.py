"""Two CPU processes with gloo under torchrun: the same CLI, sharded data, one metrics.json from rank 0."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from resnet_demo.store.events import read_events
from resnet_demo.store.weights import load_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(synthetic_data_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "resnet_demo", "train", "--depth", "8", "--preset", "classroom", "--epochs", "1",
           "--batch-size", "64", "--device", "cpu", "--data-dir", str(synthetic_data_dir), "--out", str(out),
           "--no-download", "--quiet", "--checkpoint-minutes", "0.000001"]  # and rank 0 checkpoints every step
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # 640 images, global batch 64 = 2 ranks x 32: 10 steps, and the final evaluation on all 320 test images.
    assert metrics["steps"] == 10 and metrics["test_images"] == 320
    assert metrics["hardware"].startswith("2 x ")
    events = read_events(out / "events.jsonl")
    assert [e["type"] for e in events].count("start") == 1  # only rank 0 writes the history
    start = events[0]
    assert start["world_size"] == 2 and start["steps_per_epoch"] == 10 and start["batch_size"] == 64
    (epoch,) = [e for e in events if e["type"] == "epoch"]
    assert epoch["step"] == 10 and np.isfinite(epoch["train_loss"])
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == list(range(1, 11))
    assert events[-1]["status"] == "completed"
    # The saved model is the trained one: evaluating it reproduces the recorded accuracy; it learned something.
    model, _ = load_model(out / "model.safetensors", metrics["sha256"])
    from resnet_demo.data.cifar import load_cifar10
    from resnet_demo.store.evaluate import evaluate

    assert evaluate(model, load_cifar10(synthetic_data_dir).test)["accuracy"] == metrics["test_accuracy"]
    assert metrics["test_accuracy"] > 0.15
