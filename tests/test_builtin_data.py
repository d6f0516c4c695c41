"""The built-in CIFAR-10 subset in weights/, and which data a run picks: the full set when found, else the built-in
subset when the run fits it, else a message that says how to get the full set."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from resnet_demo.data import builtin as builtin_data
from resnet_demo.data.cifar import DataError
from resnet_demo.training import sources

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shipped():
    return builtin_data.load()  # decodes both mosaics and checks their pixels against the recorded sha256


def test_shipped_subset_is_stratified_and_sized(shipped):
    assert (len(shipped.train), len(shipped.test)) == (builtin_data.TRAIN_IMAGES, builtin_data.TEST_IMAGES)
    assert np.bincount(shipped.train.labels).tolist() == [500] * 10
    assert np.bincount(shipped.test.labels).tolist() == [100] * 10
    with np.load(builtin_data.builtin_path()) as z:
        for split, n in (("train", 50_000), ("test", 10_000)):
            idx = z[f"{split}_indices"]
            assert len(np.unique(idx)) == len(idx) and idx.min() >= 0 and idx.max() < n
    info = builtin_data.info()
    assert info["provenance"]["train"]["of"] == 50_000 and info["provenance"]["test"]["of"] == 10_000
    assert "make_builtin_data.py" in info["provenance"]["made_with"]


def test_a_damaged_file_is_refused_with_a_way_out(tmp_path):
    data = builtin_data.builtin_path().read_bytes()
    with np.load(builtin_data.builtin_path()) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["test_sha256"] = np.array("0" * 64)
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(DataError, match="damaged.*do not match their recorded sha256.*git checkout"):
        builtin_data.load(tmp_path / "tampered.npz")
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="git checkout"):
        builtin_data.load(tmp_path / "cut.npz")


@pytest.mark.realdata
def test_shipped_images_are_the_genuine_ones_at_their_indices(shipped, real_data_dir):
    proc = subprocess.run([sys.executable, "scripts/make_builtin_data.py", "--data-dir", str(real_data_dir), "--check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0 and "matches a rebuild" in proc.stdout, proc.stdout + proc.stderr
    from resnet_demo.data.cifar import load_cifar10

    full = load_cifar10(real_data_dir)
    with np.load(builtin_data.builtin_path()) as z:
        assert np.array_equal(full.train.images[z["train_indices"]], shipped.train.images)
        assert np.array_equal(full.test.labels[z["test_indices"]], shipped.test.labels)


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    monkeypatch.delenv("RESNET_DEMO_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./data here
    return tmp_path


def test_plan_without_the_full_set(no_data):
    p = sources.plan(None, "classroom")
    assert p.kind == sources.BUILTIN and (p.train_images, p.test_images) == (5000, 1000)
    assert p.message.startswith("No full CIFAR-10 found; training on the built-in 5,000-image subset")
    assert sources.plan(None, "paper", subset=2000).kind == sources.BUILTIN  # asks for no more than it holds
    assert sources.plan(None, "classroom", subset=20_000).kind == sources.MISSING
    missing = sources.plan(None, "fast")
    assert missing.kind == sources.MISSING
    assert "`python -m resnet_demo download`" in missing.message and "RESNET_DEMO_DATA" in missing.message
    for text in (p.message, missing.message):
        assert "../" not in text


def test_plan_with_the_full_set(synthetic_data_dir, no_data):
    assert sources.plan(synthetic_data_dir, "fast").kind == sources.FULL
    assert sources.load_for_training(synthetic_data_dir, "classroom", None).source == str(synthetic_data_dir)


def test_load_for_training_never_downloads_offline(no_data):
    assert sources.load_for_training(None, "classroom", None).source == builtin_data.SOURCE
    with pytest.raises(DataError, match="python -m resnet_demo download"):
        sources.load_for_training(None, "paper", None)  # RESNET_DEMO_OFFLINE=1 (conftest): no attempt


def test_classroom_epochs_follow_the_set_size():
    from resnet_demo.training.recipes import RECIPES, get_recipe

    r = RECIPES["classroom"]
    assert r.epochs_for(train_images=50_000) == r.epochs == 5
    assert r.epochs_for(train_images=25_000) == 2 * r.epochs  # the same steps: twice the passes over half the set
    # ...up to a cap: more passes over the built-in 5,000 would outlast a lesson's minutes (docs/RESULTS.md)
    assert r.epochs_for(train_images=5_000) == r.most_epochs == 32 < 10 * r.epochs
    assert get_recipe("classroom", train_images=5_000).epochs == r.most_epochs
    assert get_recipe("classroom", train_images=500).epochs == r.most_epochs
    assert get_recipe("classroom", epochs=2, train_images=5_000).epochs == 2  # --epochs wins
    assert get_recipe("fast", train_images=5_000).epochs == RECIPES["fast"].epochs


def test_train_on_the_builtin_subset_records_it(no_data):
    # The new user's path: no data set, no internet, from any folder: the classroom preset trains at once.
    out = no_data / "run"
    env = {k: v for k, v in __import__("os").environ.items() if k != "RESNET_DEMO_DATA"}
    proc = subprocess.run([sys.executable, "-m", "resnet_demo", "train", "--depth", "8", "--preset", "classroom",
                           "--epochs", "1", "--batch-size", "256", "--device", "cpu", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=no_data, timeout=600,
                          env={**env, "PYTHONPATH": str(ROOT), "RESNET_DEMO_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("No full CIFAR-10 found; training on the built-in 5,000-image subset") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == {"kind": "builtin", "source": builtin_data.SOURCE, "train_images": 5000,
                               "test_images": 1000}
    assert metrics["test_images"] == 1000 and metrics["steps"] == 5000 // 256
    assert json.loads((out / "config.json").read_text())["data"]["kind"] == "builtin"
    assert "on 1,000 built-in test images" in proc.stderr
