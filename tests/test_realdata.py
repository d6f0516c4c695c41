"""On the genuine CIFAR-10 (skips without it): the data are intact, the classroom preset visibly learns, and
evaluate reproduces every shipped model's manifest figures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from resnet_demo.data.cifar import load_cifar10

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.realdata


def test_real_data_integrity(real_data_dir):
    d = load_cifar10(real_data_dir)
    assert (len(d.train), len(d.test)) == (50_000, 10_000)
    assert np.bincount(d.train.labels).tolist() == [5000] * 10
    assert np.bincount(d.test.labels).tolist() == [1000] * 10
    # The first labels of data_batch_1 and test_batch of the original python pickles.
    assert d.train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert d.test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    # Per-channel mean of the training images: what paper.MEAN records.
    from resnet_demo.nets.paper import MEAN

    assert np.allclose(d.train.images.reshape(-1, 3).mean(0) / 255, MEAN, atol=1e-4)


@pytest.mark.slow
def test_classroom_preset_learns_on_a_real_subset(real_data_dir, tmp_path):
    # A full classroom run (5 epochs of 50,000 images) takes too long for the suite on 2 shared cores:
    # 5,000 stratified images for 2 epochs (78 steps at batch 128, the preset's lr scaled to it) must already be
    # well above the 10% of guessing. Measured at 30.6 / 37.0 / 33.6 % for seeds 0-2; 2,000 images for one epoch
    # (16 steps) gave 19-20 %, too close to a threshold to be a stable test.
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_demo", "train", "--depth", "20", "--preset", "classroom", "--device", "cpu",
         "--subset", "5000", "--epochs", "2", "--batch-size", "128", "--test-subset", "1000",
         "--data-dir", str(real_data_dir), "--out", str(out), "--no-download", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_images"] == 10_000 and metrics["subset"] == 5000
    assert metrics["test_accuracy"] > 0.25, metrics["test_accuracy"]


SHIPPED = ROOT / "weights"


def _shipped_names() -> list[str]:
    from resnet_demo.store.registry import shipped_models

    return [e.name for e in shipped_models(SHIPPED)]


@pytest.mark.slow  # each is two passes over the 10,000 test images (flip-TTA), shared with the other tests
@pytest.mark.parametrize("name", _shipped_names() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no shipped weights in weights/ (ship a run with `python -m resnet_demo ship RUN`)"))])
def test_shipped_figures_are_reproduced_by_evaluate(shipped_evaluation, name):
    # Every number the manifest (and so the README and the app) states must come out of the shipped file.
    # shipped_evaluation (conftest.py) is evaluate(entry.load(), <real test set>, "cpu", flip_tta=True), run once
    # a session for each file.
    from resnet_demo.store.registry import shipped_models

    entry = next(e for e in shipped_models(SHIPPED) if e.name == name)
    result = shipped_evaluation(entry)
    rec = entry.record
    assert result["accuracy"] == rec["test_accuracy"]
    assert result["accuracy_flip_tta"] == rec["test_accuracy_flip_tta"]
    assert result["per_class"] == rec["per_class"]
    assert result["confusion"] == rec["confusion"]
    preds = entry.load_predictions()
    assert preds is not None and (preds["pred"] == preds["labels"]).mean() == rec["test_accuracy"]


def test_shipped_test_images_are_the_real_pixels(real_test_split):
    # The Test-set page shows these instead of the data set, so they must be the genuine images, bit for bit.
    from resnet_demo.data.testimages import read_test_images
    from resnet_demo.store.registry import shipped_models

    shipped = read_test_images(SHIPPED)
    if shipped is None:
        pytest.skip("no weights/test_images.npz")
    idx = np.array(sorted(shipped))
    assert np.array_equal(np.stack([shipped[i][0] for i in idx]), real_test_split.images[idx])
    assert [shipped[i][1] for i in idx] == real_test_split.labels[idx].tolist()
    for entry in shipped_models(SHIPPED):
        preds = entry.load_predictions()
        assert set(np.flatnonzero(preds["pred"] != preds["labels"]).tolist()) <= shipped.keys(), entry.name
