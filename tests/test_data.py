"""Finding and reading CIFAR-10, the stratified subset, and the device-side augmenting loader."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from resnet_demo.data import cifar as data_mod
from resnet_demo.data.cifar import (
    DataError,
    Split,
    candidate_dirs,
    find_cifar10,
    load_cifar10,
    save_npz_pair,
    stratified_subset,
    synthetic_cifar10,
)
from resnet_demo.data.loader import PAD, DeviceLoader, denormalize, normalize
from resnet_demo.nets.paper import CLASSES, MEAN, STD

# ---------------------------------------------------------------- sources and search order

def _fake_torchvision_folder(root, n_per_batch=20, seed=1):
    """torchvision's cifar-10-batches-py layout: pickled dicts with 'data' (N, 3072) uint8 CHW rows and 'labels'."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    expected = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (n_per_batch, 32, 32, 3), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        rows = images.transpose(0, 3, 1, 2).reshape(n_per_batch, 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": rows, "labels": labels, "filenames": []}, f)
        expected[name] = (images, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CLASSES), "num_cases_per_batch": n_per_batch, "num_vis": 3072}, f)
    return expected


def test_reads_the_npz_pair(synthetic_data_dir):
    d = load_cifar10(synthetic_data_dir)
    assert (len(d.train), len(d.test)) == (640, 320)
    assert d.train.images.shape == (640, 32, 32, 3) and d.train.images.dtype == np.uint8
    assert d.train.labels.dtype == np.int64 and d.source == str(synthetic_data_dir)


def test_fake_torchvision_folder_fails_torchvisions_md5_check_with_a_clear_error(tmp_path):
    # torchvision.datasets.CIFAR10 verifies the MD5 of every batch file, so a hand-made folder is refused;
    # we must turn that into a DataError naming the folder, not a bare RuntimeError.
    _fake_torchvision_folder(tmp_path)
    assert find_cifar10(tmp_path) == tmp_path
    with pytest.raises(DataError, match="cifar-10-batches-py.*(not found or corrupted)"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_reads_torchvisions_pickled_batches(tmp_path, monkeypatch, point_at):
    # The MD5 check is the only thing that can tell real files from ours: bypass just that, in torchvision's
    # own module, so the rest of its real reading code (pickle, CHW->HWC) runs on our tiny fake folder.
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    expected = _fake_torchvision_folder(tmp_path)
    where = tmp_path if point_at == "parent" else tmp_path / "cifar-10-batches-py"
    d = load_cifar10(where)
    train_images = np.concatenate([expected[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = sum((expected[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert np.array_equal(d.train.images, train_images) and d.train.labels.tolist() == train_labels
    assert np.array_equal(d.test.images, expected["test_batch"][0])
    assert d.test.labels.tolist() == expected["test_batch"][1]
    assert d.source.endswith("cifar-10-batches-py")


def _pair(directory, seed):
    return save_npz_pair(synthetic_cifar10(20, 10, seed=seed), directory)


def test_search_order_explicit_then_env_then_cwd(tmp_path, monkeypatch):
    explicit, env, cwd = tmp_path / "explicit", tmp_path / "env", tmp_path / "cwd"
    _pair(explicit, 1), _pair(env, 2), _pair(cwd / "data", 3)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv(data_mod.ENV_DATA, str(env))
    assert candidate_dirs(explicit) == [explicit, env, data_mod.Path("data")]
    assert load_cifar10(explicit).source == str(explicit)
    assert load_cifar10(None).source == str(env)
    monkeypatch.delenv(data_mod.ENV_DATA)
    assert load_cifar10(None).source == "data"
    # An explicit folder without data falls through to the next candidate rather than failing.
    assert load_cifar10(tmp_path / "empty").source == "data"


def test_missing_data_names_where_it_looked_and_does_not_download_offline(tmp_path, monkeypatch):
    from resnet_demo.data import download

    monkeypatch.setattr(download, "urlopen", lambda *a, **k: pytest.fail("tried to download while offline"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(data_mod.ENV_DATA, str(tmp_path / "env-dir"))
    monkeypatch.setenv(data_mod.ENV_OFFLINE, "1")  # download=None means: follow this
    with pytest.raises(DataError) as e:
        download.load_or_download(tmp_path / "nowhere")
    msg = str(e.value)
    assert "not found" in msg and str(tmp_path / "nowhere") in msg and str(tmp_path / "env-dir") in msg
    assert "`python -m resnet_demo download`" in msg and "cifar-10-batches-py" in msg and data_mod.ENV_DATA in msg
    assert "../" not in msg


def test_failed_download_is_one_clear_data_error(tmp_path, monkeypatch):
    from urllib.error import URLError

    from resnet_demo.data import download

    def unreachable(*a, **k):
        raise URLError("network is unreachable")

    monkeypatch.setattr(download, "urlopen", unreachable)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(data_mod.ENV_DATA, raising=False)
    monkeypatch.delenv(data_mod.ENV_OFFLINE, raising=False)
    with pytest.raises(DataError, match="download failed.*network is unreachable.*online"):
        download.load_or_download(tmp_path / "target", download=True)
    assert list((tmp_path / "target").iterdir()) == []  # nothing half-written


def test_unreadable_npz_is_a_data_error(tmp_path):
    (tmp_path / "train.npz").write_bytes(b"not a zip")
    (tmp_path / "test.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="train.npz is not a readable CIFAR-10 npz"):
        load_cifar10(tmp_path)
    np.savez(tmp_path / "train.npz", images=np.zeros((2, 32, 32, 3), np.uint8), labels=np.array([0, 11]))
    with pytest.raises(DataError, match="0..9"):
        load_cifar10(tmp_path)


# ---------------------------------------------------------------- stratified subset

def test_stratified_subset_is_balanced_and_deterministic():
    split = synthetic_cifar10(1000, 10, seed=3).train
    a, b = stratified_subset(split, 205, seed=7), stratified_subset(split, 205, seed=7)
    counts = np.bincount(a.labels, minlength=10)
    assert len(a) == 205 and counts.max() - counts.min() <= 1 and counts.min() == 20
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    c = stratified_subset(split, 205, seed=8)
    assert not np.array_equal(a.images, c.images)
    assert stratified_subset(split, 5000) is split
    with pytest.raises(ValueError):
        stratified_subset(split, 0)


def test_stratified_subset_of_unbalanced_split_fills_from_the_larger_classes():
    labels = np.array([0] * 50 + [1] * 3 + [2] * 47, np.int64)
    split = Split(np.zeros((100, 32, 32, 3), np.uint8), labels)
    sub = stratified_subset(split, 30)
    counts = np.bincount(sub.labels, minlength=3)
    assert len(sub) == 30 and counts[1] == 3 and abs(int(counts[0]) - int(counts[2])) <= 1


# ---------------------------------------------------------------- the device loader

@pytest.fixture(scope="module")
def noise_split() -> Split:
    """Random images: every 32x32 window (and its mirror) of every padded image is unique, so the source,
    offset and flip of each loader output can be recovered exactly."""
    rng = np.random.default_rng(0)
    return Split(rng.integers(1, 256, (96, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 96).astype(np.int64))


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (denormalize(x) * 255).round().to(torch.uint8)


def _locate(batch: torch.Tensor, split: Split):
    """[(source index, dy, dx, flipped)] of each image in a loader batch, by exhaustive search."""
    padded = torch.nn.functional.pad(torch.from_numpy(split.images).permute(0, 3, 1, 2), (PAD,) * 4)
    windows = padded.unfold(2, 32, 1).unfold(3, 32, 1)  # (N, 3, 9, 9, 32, 32), a view
    found = []
    for img in _to_uint8(batch):
        hits = []
        for flipped, target in ((False, img), (True, img.flip(2))):
            # the centre pixel narrows the search; the full window then has to match exactly
            cand = (windows[..., 16, 16] == target[:, 16, 16, None, None, None].transpose(0, 1)).all(1)
            for n, dy, dx in cand.nonzero().tolist():
                if torch.equal(windows[n, :, dy, dx], target):
                    hits.append((n, dy, dx, flipped))
        assert len(hits) == 1, f"expected exactly one source window, found {hits}"
        found.append(hits[0])
    return found


def test_eval_loader_normalises_with_the_paper_constants(noise_split):
    loader = DeviceLoader(noise_split, 40, train=False)
    batches = list(loader.epoch())
    assert [len(y) for _, y in batches] == [40, 40, 16] and len(loader) == 3
    x = torch.cat([b[0] for b in batches])
    assert x.shape == (96, 3, 32, 32) and x.dtype == torch.float32
    raw = torch.from_numpy(noise_split.images).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(x, (raw - mean) / std, atol=1e-6)
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.from_numpy(noise_split.labels))
    assert torch.allclose(normalize(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)).flatten(),
                          (1 - torch.tensor(MEAN)) / torch.tensor(STD))


def test_train_crops_are_windows_of_the_zero_padded_image_and_flips_about_half(noise_split):
    loader = DeviceLoader(noise_split, 32, train=True, seed=5)
    assert len(loader) == 3  # 96 // 32, ragged batch dropped
    seen, offsets, flips = [], set(), 0
    for epoch in range(3):
        for x, y in loader.epoch(epoch):
            assert x.shape == (32, 3, 32, 32) and y.shape == (32,)
            located = _locate(x, noise_split)
            assert y.tolist() == [int(noise_split.labels[n]) for n, *_ in located]
            seen += [n for n, *_ in located]
            offsets.update((dy, dx) for _, dy, dx, _ in located)
            flips += sum(f for *_, f in located)
    assert sorted(seen) == sorted(list(range(96)) * 3)  # each epoch is a permutation
    assert 0.35 < flips / len(seen) < 0.65
    # offsets are uniform over the 9x9 positions of a 32x32 window in the 40x40 padded image
    assert len(offsets) >= 60 and all(0 <= dy <= 2 * PAD and 0 <= dx <= 2 * PAD for dy, dx in offsets)


def test_train_batches_are_deterministic_per_seed_and_epoch_and_resume_exactly(noise_split):
    a = DeviceLoader(noise_split, 16, train=True, seed=1)
    b = DeviceLoader(noise_split, 16, train=True, seed=1)
    e0 = list(a.epoch(0))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(e0, b.epoch(0)))
    resumed = list(b.epoch(0, start_batch=4))
    assert len(resumed) == len(e0) - 4
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(e0[4:], resumed))
    e1 = list(a.epoch(1))
    assert not torch.equal(e0[0][0], e1[0][0])
    other_seed = list(DeviceLoader(noise_split, 16, train=True, seed=2).epoch(0))
    assert not torch.equal(e0[0][0], other_seed[0][0])


def test_zero_padding_shows_at_the_border():
    ones = Split(np.full((64, 32, 32, 3), 200, np.uint8), np.zeros(64, np.int64))
    x, _ = next(iter(DeviceLoader(ones, 64, train=True, seed=0).epoch(0)))
    u = _to_uint8(x)
    assert set(torch.unique(u).tolist()) == {0, 200}
    # a shifted crop has a zero stripe along one edge, and never zeros in the middle 24x24
    assert (u[:, :, 4:28, 4:28] == 200).all()
    assert (u == 0).any(dim=(1, 2, 3)).float().mean() > 0.5


def test_ddp_shards_are_disjoint_and_cover_the_epoch(noise_split):
    shards = []
    for rank in range(2):
        loader = DeviceLoader(noise_split, 16, train=True, seed=3, rank=rank, world_size=2)
        assert len(loader) == 96 // 32
        shards.append([n for x, _ in loader.epoch(0) for n, *_ in _locate(x, noise_split)])
    assert len(shards[0]) == len(shards[1]) == 48
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(96))
    evals = [torch.cat([y for _, y in DeviceLoader(noise_split, 10, train=False, rank=r, world_size=2).epoch()])
             for r in range(2)]
    assert len(evals[0]) + len(evals[1]) == 96
