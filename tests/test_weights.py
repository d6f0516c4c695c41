"""Weights files: safetensors round trip, every kind of bad file refused whole, the registry, `evaluate --json`."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from resnet_demo import cli
from resnet_demo.nets.model import Arch, build_model
from resnet_demo.store.registry import ENV_RUNS, ENV_WEIGHTS, finished_runs, list_models, resolve, shipped_models
from resnet_demo.store.ship import BUDGET_BYTES, size_bytes
from resnet_demo.store.weights import WeightsError, load_model, save_model


@pytest.fixture
def weights_copy(tiny_weights_dir, tmp_path, monkeypatch):
    """A private copy of the shipped folder (tests damage files), and an empty runs folder."""
    d = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, d)
    monkeypatch.setenv(ENV_WEIGHTS, str(d))
    monkeypatch.setenv(ENV_RUNS, str(tmp_path / "no-runs"))
    return d


def test_safetensors_round_trip(tmp_path):
    torch.manual_seed(1)
    model = build_model(8, shortcut="B")
    model.layer1[0].bn1.running_mean.uniform_()  # buffers travel too
    sha = save_model(tmp_path / "m.safetensors", model, model.arch)
    loaded, meta = load_model(tmp_path / "m.safetensors", sha)
    assert meta["arch"] == Arch(8, shortcut="B") and not loaded.training
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert meta["classes"][0] == "airplane" and len(meta["normalization"]["mean"]) == 3
    assert (tmp_path / "m.safetensors").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    half_sha = save_model(tmp_path / "h.safetensors", model, model.arch, dtype=torch.float16)
    half, _ = load_model(tmp_path / "h.safetensors", half_sha)
    assert half.conv1.weight.dtype == torch.float32  # loaded back into a float32 model
    assert torch.allclose(half.conv1.weight, model.conv1.weight, atol=1e-2)


def _damage(entry, how: str, tmp_path):
    path = entry.weights
    data = path.read_bytes()
    if how == "one flipped byte":
        path.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "random bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "another depth renamed":
        save_model(path, build_model(14), Arch(14))
    elif how == "missing":
        path.unlink()


@pytest.mark.parametrize("how, message", [
    ("one flipped byte", "does not match its recorded sha256"),
    ("truncated", "does not match its recorded sha256"),
    ("random bytes", "does not match its recorded sha256"),
    ("empty", "does not match its recorded sha256"),
    ("another depth renamed", "does not match its recorded sha256"),
    ("missing", "does not exist"),
])
def test_bad_shipped_files_raise_weights_error(weights_copy, tmp_path, how, message):
    (entry,) = shipped_models(weights_copy)
    _damage(entry, how, tmp_path)
    with pytest.raises(WeightsError, match=message):
        entry.load()


@pytest.mark.parametrize("how, message", [
    ("truncated", "truncated|corrupt"),
    ("random bytes", "not a safetensors file|corrupt header"),
    ("empty", r"not a safetensors file \(only 0 bytes\)"),
    ("another depth renamed", "holds ResNet-14, but 'resnet8' is listed as ResNet-8"),
])
def test_bad_files_without_a_recorded_sha_are_still_refused(weights_copy, tmp_path, how, message):
    manifest = json.loads((weights_copy / "manifest.json").read_text())
    del manifest["models"]["resnet8"]["sha256"]
    (weights_copy / "manifest.json").write_text(json.dumps(manifest))
    (entry,) = shipped_models(weights_copy)
    assert entry.sha256 is None
    _damage(entry, how, tmp_path)
    with pytest.raises(WeightsError, match=message):
        entry.load()


def test_tensors_that_do_not_fit_the_recorded_arch_are_refused_whole(tmp_path):
    from safetensors.torch import save

    meta = {"format": "resnet-demo-weights/1", "arch": json.dumps(Arch(8).to_dict())}
    deeper = {k: v.contiguous() for k, v in build_model(14).state_dict().items()}
    (tmp_path / "lie.safetensors").write_bytes(save(deeper, metadata=meta))
    with pytest.raises(WeightsError, match="does not fit ResNet-8: unexpected layer1.1"):
        load_model(tmp_path / "lie.safetensors")
    wide = build_model(8).state_dict()
    wide["fc.weight"] = torch.zeros(10, 32)
    (tmp_path / "shape.safetensors").write_bytes(save({k: v.contiguous() for k, v in wide.items()}, metadata=meta))
    with pytest.raises(WeightsError, match="wrong shape fc.weight"):
        load_model(tmp_path / "shape.safetensors")
    (tmp_path / "foreign.safetensors").write_bytes(save({"x": torch.zeros(2)}))
    with pytest.raises(WeightsError, match="not one of this project's models"):
        load_model(tmp_path / "foreign.safetensors")


def test_registry_lists_shipped_models_and_finished_runs(weights_copy, tiny_run, tmp_path, monkeypatch):
    (entry,) = shipped_models()
    assert (entry.name, entry.label, entry.source, entry.arch) == ("resnet8", "ResNet-8", "shipped", Arch(8))
    assert entry.history.is_file() and entry.load_history()[0]["type"] == "start"
    preds = entry.load_predictions()
    assert preds["probs"].shape == (320, 10) and preds["pred"].dtype == np.uint8
    assert 0 < entry.test_accuracy <= 1
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "tiny")
    (runs / "junk").mkdir()
    (runs / "junk" / "metrics.json").write_text("{not json")  # skipped, not fatal
    monkeypatch.setenv(ENV_RUNS, str(runs))
    assert [m.name for m in finished_runs()] == ["run:tiny"]
    assert [m.name for m in list_models()] == ["resnet8", "run:tiny"]
    assert resolve("run:tiny").load().arch == Arch(8)
    assert resolve(str(entry.weights)).source == "file"
    with pytest.raises(WeightsError, match="no model named 'resnet99'.*known models: resnet8, run:tiny"):
        resolve("resnet99")


def test_models_cli_json(weights_copy, capsys):
    assert cli.main(["models", "--json"]) == 0
    (m,) = json.loads(capsys.readouterr().out)
    assert (m["name"], m["depth"], m["source"]) == ("resnet8", 8, "shipped") and m["test_accuracy"] > 0


def test_evaluate_json_contract(weights_copy, synthetic_data_dir, capsys):
    assert cli.main(["evaluate", "--weights", "resnet8", "--data-dir", str(synthetic_data_dir), "--device", "cpu",
                     "--flip-tta", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"accuracy", "per_class", "confusion"} <= set(out)
    confusion = np.array(out["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == out["n"] == 320
    assert out["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    per_class = np.diag(confusion) / confusion.sum(1)
    assert list(out["per_class"]) == list(__import__("resnet_demo.nets.paper").nets.paper.CLASSES)
    assert np.allclose(list(out["per_class"].values()), per_class)
    manifest = json.loads((weights_copy / "manifest.json").read_text())["models"]["resnet8"]
    assert out["accuracy"] == pytest.approx(manifest["test_accuracy"])  # the shipped figure is reproducible
    assert out["accuracy_flip_tta"] == pytest.approx(manifest["test_accuracy_flip_tta"])
    assert "probs" not in out


def test_evaluate_cli_errors_are_one_line(weights_copy, synthetic_data_dir, capsys):
    assert cli.main(["evaluate", "--weights", "nope", "--data-dir", str(synthetic_data_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no model named 'nope'") and err.count("\n") == 1
    if not torch.cuda.is_available():
        assert cli.main(["evaluate", "--weights", "resnet8", "--device", "cuda",
                         "--data-dir", str(synthetic_data_dir)]) == 1
        assert "error: --device cuda was asked for, but PyTorch sees no CUDA GPU" in capsys.readouterr().err


def test_shipped_twins_get_labels_that_tell_them_apart(weights_copy):
    manifest = json.loads((weights_copy / "manifest.json").read_text())
    first = manifest["models"]["resnet8"]
    manifest["models"]["resnet8-long"] = dict(first, epochs=first["epochs"] * 3)
    (weights_copy / "manifest.json").write_text(json.dumps(manifest))
    labels = {e.name: e.label for e in shipped_models(weights_copy)}
    assert labels == {"resnet8": f"ResNet-8 · {first['epochs']} epochs",
                      "resnet8-long": f"ResNet-8 · {3 * first['epochs']} epochs"}
    manifest["models"]["resnet8-long"]["epochs"] = first["epochs"]
    (weights_copy / "manifest.json").write_text(json.dumps(manifest))
    assert {e.label for e in shipped_models(weights_copy)} == {"ResNet-8 (resnet8)", "ResNet-8 (resnet8-long)"}


def test_ship_cli_says_how_much_of_the_budget_weights_uses(tiny_run, synthetic_data_dir, tmp_path, monkeypatch,
                                                           capsys):
    monkeypatch.setenv(ENV_WEIGHTS, str(tmp_path / "w"))
    assert cli.main(["ship", str(tiny_run), "--name", "tiny", "--data-dir", str(synthetic_data_dir),
                     "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "shipped tiny: test accuracy" in out
    assert f"weights/ now holds {size_bytes(tmp_path / 'w') / 1e6:.1f} MB of its 30 MB budget\n" in out
    monkeypatch.setattr("resnet_demo.store.ship.BUDGET_BYTES", 1000)  # a shipped model is far bigger
    assert cli.main(["ship", str(tiny_run), "--name", "tiny", "--data-dir", str(synthetic_data_dir),
                     "--no-download"]) == 0
    assert "budget: over it, so ship with --fp16 or remove a superseded model" in capsys.readouterr().out


def test_the_repository_weights_stay_within_budget():
    from pathlib import Path

    assert size_bytes(Path(__file__).resolve().parent.parent / "weights") <= BUDGET_BYTES


@pytest.fixture
def twin_weights(weights_copy, tiny_run, synthetic_data_dir):
    """weights_copy with the tiny run shipped a second time, as 'resnet8-long': a successor for resnet8."""
    from resnet_demo.store.ship import ship_run

    ship_run(tiny_run, "resnet8-long", data_dir=str(synthetic_data_dir), download=False, directory=weights_copy)
    return weights_copy


def test_retiring_drops_weights_but_keeps_the_history_for_fig6(twin_weights, synthetic_data_dir, capsys):
    from resnet_demo.data.cifar import load_cifar10
    from resnet_demo.data.testimages import read_test_images
    from resnet_demo.store.registry import retired_models, with_history
    from resnet_demo.store.ship import update_test_images

    old = json.loads((twin_weights / "manifest.json").read_text())["models"]["resnet8"]
    before = size_bytes(twin_weights)
    assert cli.main(["retire", "resnet8", "--for", "resnet8-long"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("retired resnet8 for resnet8-long: weights/resnet8.safetensors removed, history "
                          "resnet8.history.jsonl kept;")
    assert f"({(before - size_bytes(twin_weights)) / 1e6:.1f} MB freed)" in out
    assert not (twin_weights / "resnet8.safetensors").exists() and not (twin_weights / "resnet8.preds.npz").exists()
    (successor,) = shipped_models(twin_weights)
    assert successor.name == "resnet8-long" and successor.label == "ResNet-8"  # no twin left to tell apart
    (retired,) = retired_models(twin_weights)
    assert retired.weights is None and retired.history.is_file() and retired.test_accuracy is None
    assert retired.record["retired"] == {"for": "resnet8-long", "file": "resnet8.safetensors",
                                         "sha256": old["sha256"], "stored_dtype": old["stored_dtype"],
                                         "test_accuracy": old["test_accuracy"],
                                         "test_accuracy_flip_tta": old["test_accuracy_flip_tta"]}
    assert retired.record["command"] == old["command"] and "per_class" not in retired.record
    assert {e.name for e in with_history(twin_weights)} == {"resnet8", "resnet8-long"}
    assert retired.load_history() == shipped_models(twin_weights)[0].load_history()  # the same tiny run
    with pytest.raises(WeightsError, match="'resnet8' was retired for 'resnet8-long'; only its training history"):
        resolve("resnet8")
    # the test images shrink to what the remaining model needs, exactly as if written from the test set
    kept = read_test_images(twin_weights)
    update_test_images(twin_weights, load_cifar10(str(synthetic_data_dir)).test)
    assert read_test_images(twin_weights).keys() == kept.keys()
    assert cli.main(["models"]) == 0
    assert "history only, for Fig. 6 (retired for resnet8-long)" in capsys.readouterr().out


def test_retiring_refuses_what_would_lose_a_model(twin_weights, tiny_run, synthetic_data_dir):
    from resnet_demo.store.registry import retired_models
    from resnet_demo.store.ship import retire_model, ship_run

    manifest_before = (twin_weights / "manifest.json").read_bytes()
    with pytest.raises(WeightsError, match="no shipped model named 'resnet9'"):
        retire_model("resnet8", "resnet9", twin_weights)
    with pytest.raises(WeightsError, match="only be retired for another shipped model of its architecture"):
        retire_model("resnet8", "resnet8", twin_weights)
    manifest = json.loads(manifest_before)
    manifest["models"]["resnet8-long"]["depth"] = 14
    (twin_weights / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match=r"'resnet8' \(ResNet-8\) .* not 'resnet8-long' \(ResNet-14\)"):
        retire_model("resnet8", "resnet8-long", twin_weights)
    manifest["models"]["resnet8-long"].update(depth=8, test_accuracy=manifest["models"]["resnet8"]["test_accuracy"] - 0.01)
    (twin_weights / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="is less accurate than 'resnet8'"):
        retire_model("resnet8", "resnet8-long", twin_weights)
    assert (twin_weights / "resnet8.safetensors").is_file()
    # shipping a retired name again brings it back as a model, and its old history goes
    (twin_weights / "manifest.json").write_bytes(manifest_before)
    (twin_weights / "test_images.npz").unlink()  # nothing to shrink: retiring still works
    retire_model("resnet8", "resnet8-long", twin_weights)
    assert not (twin_weights / "test_images.npz").exists()
    ship_run(tiny_run, "resnet8", data_dir=str(synthetic_data_dir), download=False, directory=twin_weights)
    assert retired_models(twin_weights) == [] and {e.name for e in shipped_models(twin_weights)} == {"resnet8", "resnet8-long"}


SAVE_IN_A_FRESH_PROCESS = """
import sys, torch
from resnet_demo.training.checkpoint import save_checkpoint
from resnet_demo.nets.model import build_model
from resnet_demo.base.storage import sha256_file
from resnet_demo.store.weights import save_model
torch.manual_seed(0)
model = build_model(8)
extra = {k: i for i, k in enumerate("abcdefgh")}  # more keys: more orders a hash map could put them in
print(save_model(sys.argv[1] + ".safetensors", model, model.arch, extra=extra))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
model(torch.zeros(2, 3, 32, 32)).sum().backward()
opt.step()
save_checkpoint(sys.argv[1] + ".ckpt", model, opt, {"step": 1, "epoch": 0, "batch": 1, "config": {"depth": 8}})
print(sha256_file(sys.argv[1] + ".ckpt"))
"""


def test_the_same_weights_give_the_same_bytes_in_any_process(tmp_path):
    # safetensors orders the metadata as a Rust hash map does, differently in each process; the sha256 of a
    # weights file must be a fingerprint of its weights, so two processes must write the very same bytes.
    # (12 metadata keys: two processes that ordered them alike by chance would be a 1-in-millions event.)
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    root = Path(__file__).resolve().parent.parent
    shas = [subprocess.run([sys.executable, "-c", SAVE_IN_A_FRESH_PROCESS, str(tmp_path / f"p{i}")], check=True,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)},
                           timeout=300).stdout.split() for i in range(2)]
    assert shas[0] == shas[1], shas
    model, meta = load_model(tmp_path / "p0.safetensors", shas[0][0])
    assert meta["h"] == 7 and model.arch == Arch(8)
    assert load_file(str(tmp_path / "p0.ckpt")).keys() == load_file(str(tmp_path / "p1.ckpt")).keys()
    # Files written before the header was canonical keep their recorded sha256 and still load.
    shipped = shipped_models(root / "weights")
    if shipped:
        smallest = min(shipped, key=lambda e: e.weights.stat().st_size)
        assert smallest.load().arch == smallest.arch
