"""The built-in CIFAR-10 subset in weights/: sized, stratified, intact, and the genuine images it says it holds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from resnet_demo import builtin_data
from resnet_demo.data import DataError

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
    from resnet_demo.data import load_cifar10

    full = load_cifar10(real_data_dir, download=False)
    with np.load(builtin_data.builtin_path()) as z:
        assert np.array_equal(full.train.images[z["train_indices"]], shipped.train.images)
        assert np.array_equal(full.test.labels[z["test_indices"]], shipped.test.labels)
