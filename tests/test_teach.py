"""Teaching a network classes of its own: names, model files with any number of classes, the teach itself, the
image folder it reads, and the CLI from a folder to a prediction with the taught names."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_demo.data.cifar import DataError, Split, select_classes, synthetic_cifar10
from resnet_demo.data.folder import ImageSetError, read_image_folder
from resnet_demo.nets.classes import MAX_CLASSES, MAX_NAME_CHARS, ClassNameError, check_names
from resnet_demo.nets.inference import probabilities, top_k
from resnet_demo.nets.model import build_model
from resnet_demo.nets.paper import CLASSES
from resnet_demo.store import export
from resnet_demo.store.evaluate import evaluate
from resnet_demo.store.registry import ENV_RUNS, default_model, finished_runs, model_label, resolve
from resnet_demo.store.weights import WeightsError, load_model, load_model_bytes, model_bytes, save_model
from resnet_demo.training.teach import (
    SCRATCH,
    TeachConfig,
    TeachError,
    save_result,
    split_holdout,
    teach,
    teach_both,
)

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("teapot", "Cactus", "bike")
TINY = TeachConfig(start=SCRATCH, depth=8, steps=30, batch_size=32, holdout=0.25, eval_every=10)


def three_classes(per_class: int = 12, seed: int = 0) -> Split:
    """A learnable 3-class set: three of the synthetic stand-in's classes (colour + stripes + noise), renamed."""
    data = synthetic_cifar10(10 * per_class, 10, seed=seed).train
    picked = select_classes(data, ("cat", "ship", "truck"))
    return Split(picked.images, picked.labels, NAMES)


# --- names ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names, message", [
    (["cat"], "at least 2"),
    (["cat", ""], "empty"),
    (["cat", "   "], "empty"),
    (["cat", "x" * (MAX_NAME_CHARS + 1)], f"at most {MAX_NAME_CHARS}"),
    (["cat", "do\ng"], "control"),
    (["cat", "dog\u202e"], "invisible"),
    (["cat", "a/b"], "path separator"),
    (["cat", "a\\b"], "path separator"),
    (["cat", ".."], "not a class name"),
    (["Cat", "cat"], "ignoring case"),
    (["cat", "cat"], "twice"),
    (["cat", 3], "must be text"),
    ("cat", "single string"),
    ([f"c{i}" for i in range(MAX_CLASSES + 1)], "more than"),
])
def test_bad_class_names_are_refused_with_a_reason(names, message):
    with pytest.raises(ClassNameError, match=message):
        check_names(names)


def test_names_are_trimmed_and_kept_in_order():
    assert check_names([" b ", "a", "Ünïcode"]) == ("b", "a", "Ünïcode")
    assert check_names(CLASSES) == CLASSES


# --- a model with three classes ----------------------------------------------------------------------------------


def test_a_three_class_model_saves_and_loads_with_its_names(tmp_path):
    torch.manual_seed(0)
    model = build_model(8, classes=NAMES)
    assert model.fc.out_features == 3 and model.classes == NAMES
    sha = save_model(tmp_path / "m.safetensors", model, model.arch)
    loaded, meta = load_model(tmp_path / "m.safetensors", sha)
    assert loaded.classes == NAMES and meta["classes"] == list(NAMES)
    assert torch.equal(loaded.fc.weight, model.fc.weight)
    again, _ = load_model_bytes((tmp_path / "m.safetensors").read_bytes(), "an upload", sha)
    assert again.classes == NAMES
    assert model_bytes(model, model.arch) == (tmp_path / "m.safetensors").read_bytes()  # same weights, same bytes


def test_a_file_without_names_means_cifar10_and_bad_names_are_refused(tmp_path):
    from safetensors.torch import save

    from resnet_demo.store.weights import FORMAT, state_tensors

    model = build_model(8)
    meta = {"format": FORMAT, "arch": json.dumps(model.arch.to_dict())}
    (tmp_path / "old.safetensors").write_bytes(save(state_tensors(model), metadata=meta))
    loaded, info = load_model(tmp_path / "old.safetensors")
    assert loaded.classes == CLASSES and info["classes"] == list(CLASSES)
    bad = {**meta, "classes": json.dumps(["cat", "CAT"] + list(CLASSES[2:]))}
    (tmp_path / "bad.safetensors").write_bytes(save(state_tensors(model), metadata=bad))
    with pytest.raises(WeightsError, match="invalid class names"):
        load_model(tmp_path / "bad.safetensors")
    three = {**meta, "classes": json.dumps(list(NAMES))}  # ten outputs, three names
    (tmp_path / "lie.safetensors").write_bytes(save(state_tensors(model), metadata=three))
    with pytest.raises(WeightsError, match="with 3 classes: wrong shape fc.weight"):
        load_model(tmp_path / "lie.safetensors")


def test_the_shipped_models_still_load_as_cifar10_with_their_recorded_sha256():
    from resnet_demo.base.storage import SHIPPED_WEIGHTS, sha256_file
    from resnet_demo.store.registry import shipped_models

    shipped = shipped_models(SHIPPED_WEIGHTS)
    assert shipped
    for entry in shipped:
        assert sha256_file(entry.weights) == entry.sha256
        assert entry.is_cifar10 and entry.classes == CLASSES
    assert shipped[0].load().classes == CLASSES


def test_predict_evaluate_and_export_use_the_models_names(tmp_path):
    torch.manual_seed(0)
    model = build_model(8, classes=NAMES).eval()
    data = three_classes(4)
    probs = probabilities(model, torch.randn(2, 3, 32, 32))
    top = top_k(probs[0], 5, model.classes)
    assert len(top) == 3 and {t["label"] for t in top} == set(NAMES)
    with pytest.raises(ValueError, match="3 probabilities but 10 class names"):
        top_k(probs[0], 5)
    result = evaluate(model, data)
    assert list(result["per_class"]) == list(NAMES) and np.array(result["confusion"]).shape == (3, 3)
    with pytest.raises(ValueError, match="the network knows teapot, Cactus, bike"):
        evaluate(model, Split(data.images, data.labels % 3, ("a", "b", "c")))
    save_model(tmp_path / "m.safetensors", model, model.arch)
    entry = resolve(str(tmp_path / "m.safetensors"))
    assert entry.classes == NAMES and not entry.is_cifar10 and "teapot, Cactus, bike" in entry.label
    meta = export.metadata(entry)
    assert meta["classes"] == list(NAMES) and meta["output"]["shape"] == ["N", 3]
    _, back = load_model_bytes(export.export_bytes(entry, "safetensors"))
    assert back["classes"] == list(NAMES)


def test_onnx_export_of_a_three_class_model_has_three_outputs(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_model(8, classes=NAMES)
    save_model(tmp_path / "m.safetensors", model, model.arch)
    entry = resolve(str(tmp_path / "m.safetensors"))
    data = export.export_bytes(entry, "onnx")
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.randn(4, 3, 32, 32)
    logits = session.run(["logits"], {"image": x.numpy()})[0]
    assert logits.shape == (4, 3)
    with torch.inference_mode():
        np.testing.assert_allclose(logits, model.eval()(x).numpy(), rtol=1e-3, atol=1e-4)
    import onnx

    props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert json.loads(props["classes"]) == list(NAMES)


# --- the teach ---------------------------------------------------------------------------------------------------


def test_the_held_out_split_is_stratified_and_fixed_by_the_seed():
    labels = np.repeat(np.arange(3), [10, 4, 2])
    train, held = split_holdout(labels, 0.25, seed=0)
    assert np.bincount(labels[held]).tolist() == [2, 1, 1]  # round(2.5)=2, 1, at least 1 (and never all)
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(16))
    assert np.array_equal(held, split_holdout(labels, 0.25, seed=0)[1])
    assert not np.array_equal(held, split_holdout(labels, 0.25, seed=1)[1])
    assert len(split_holdout(labels, 0, seed=0)[1]) == 0


def test_teach_learns_new_classes_reports_events_and_is_deterministic():
    data = three_classes(12)
    events: list[dict] = []
    result = teach(data, TINY, events.append)
    assert result.status == "completed" and result.model.classes == NAMES and not result.model.training
    assert result.accuracy >= 0.8, result.record  # chance is 1/3
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("step") == TINY.steps
    assert kinds.count("eval") == 2  # steps 10 and 20; the end reports the last
    start, end = events[0], events[-1]
    assert start["classes"] == list(NAMES) and start["holdout_images"] == 9 and start["train_images"] == 27
    assert end["holdout_accuracy"] == result.accuracy and "held-out" in end["message"]
    record = result.record
    assert np.array(record["confusion"]).sum() == 9 and list(record["per_class"]) == list(NAMES)
    assert record["taught_from"] == SCRATCH and record["steps"] == TINY.steps
    again = teach(data, TINY)
    a, b = result.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = teach(data, TeachConfig(**{**TINY.to_dict(), "seed": 1, "steps": 2}))
    assert not torch.equal(other.model.fc.weight, result.model.fc.weight)


def test_teach_from_a_trained_network_keeps_its_layers_and_leaves_it_alone(tmp_path):
    torch.manual_seed(0)
    base = build_model(8).eval()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    data = three_classes(6)
    cfg = TeachConfig(start="my base", steps=3, batch_size=16, holdout=0.2)
    result = teach(data, cfg, base=base)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the given network is copied
    assert result.record["taught_from"] == "my base" and result.model.fc.out_features == 3
    assert result.model.arch == base.arch
    events: list[dict] = []
    both = teach_both(data, cfg, events.append, base=base)
    assert set(both) == {"trained", "scratch"} and both["scratch"].record["taught_from"] == SCRATCH
    assert {e["run"] for e in events} == {"trained", "scratch"}
    with pytest.raises(TeachError, match="once from scratch"):
        teach_both(data, TeachConfig(start=SCRATCH))


def test_a_stop_ends_the_teach_with_its_network():
    steps = []
    result = teach(three_classes(4), TeachConfig(start=SCRATCH, depth=8, steps=50, batch_size=8),
                   lambda e: steps.append(e), should_stop=lambda: len(steps) > 3)
    assert result.status == "stopped" and result.record["steps"] == 3 and steps[-1]["status"] == "stopped"


@pytest.mark.parametrize("make, message", [
    (lambda d: Split(d.images[d.labels == 0], d.labels[d.labels == 0], ("only",)), "at least 2"),
    (lambda d: Split(d.images[d.labels < 2], d.labels[d.labels < 2], NAMES), "class 'bike' has no images"),
    (lambda d: Split(np.concatenate([d.images[d.labels < 2], d.images[d.labels == 2][:1]]),
                     np.concatenate([d.labels[d.labels < 2], [2]]), NAMES), "only one image"),
    (lambda d: Split(d.images, d.labels, ("a", "A", "b")), "ignoring case"),
])
def test_teach_refuses_what_cannot_be_taught(make, message):
    with pytest.raises(TeachError, match=message):
        teach(make(three_classes(4)), TINY)


@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, "steps must be"), ({"steps": 10 ** 6}, "steps must be"), ({"batch_size": 0}, "batch size"),
    ({"holdout": 1.0}, "held-out fraction"), ({"lr": -1.0}, "learning rate"), ({"depth": 9}, "6n\\+2"),
    ({"device": "tpu"}, "unsupported device"),
])
def test_bad_settings_are_refused_before_any_work(change, message):
    with pytest.raises(TeachError, match=message):
        TeachConfig(**{**TINY.to_dict(), **change}).validate()


def test_a_taught_model_is_listed_by_its_classes_and_never_the_default(tmp_path, monkeypatch):
    result = teach(three_classes(4), TeachConfig(start=SCRATCH, depth=8, steps=2, batch_size=8))
    record = save_result(result, tmp_path / "runs" / "kitchen")
    monkeypatch.setenv(ENV_RUNS, str(tmp_path / "runs"))
    (entry,) = finished_runs()
    assert entry.name == "run:kitchen" and entry.classes == NAMES and not entry.is_cifar10
    assert "teapot, Cactus, bike" in entry.label and entry.sha256 == record["sha256"]
    assert "held out" in model_label(entry) or entry.test_accuracy is None
    assert entry.at_chance_level == (record["test_accuracy"] < 0.5)  # 1.5 x chance with three classes
    assert entry.load().classes == NAMES
    assert default_model([entry]).name == "run:kitchen"  # the only one: still usable
    shipped = resolve("resnet20-e100")
    assert default_model([entry, shipped]).name == "resnet20-e100"


# --- a folder of images -------------------------------------------------------------------------------------------


def make_folder(root: Path, classes: dict[str, int], size: tuple[int, int] = (40, 36)) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for c, (name, n) in enumerate(classes.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        colour = np.array([(c * 97) % 256, (c * 53 + 90) % 256, (c * 151 + 30) % 256])
        for i in range(n):
            a = np.clip(colour + rng.normal(0, 25, (*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(d / f"{i:03d}.png")
    return root


def test_an_image_folder_is_read_with_what_was_left_out_said(tmp_path):
    root = make_folder(tmp_path / "set", {"red": 5, "green": 4, "blue": 3})
    (root / "red" / "notes.txt").write_text("not an image")
    (root / "green" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "README.md").write_text("loose")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / ".hidden").mkdir()
    (root / "blue" / "more").mkdir()
    Image.new("RGB", (50, 50), "blue").save(root / "blue" / "more" / "deep.png")
    found = read_image_folder(root, max_per_class=5, thumb_side=16)
    split = found.split
    assert split.classes == ("blue", "green", "red")  # sorted, as ImageFolder numbers them
    assert np.bincount(split.labels).tolist() == [4, 4, 5] and split.images.shape == (13, 32, 32, 3)
    assert found.thumbnails.shape == (13, 16, 16, 3) and "blue/more/deep.png" in found.files
    assert "red/notes.txt" not in found.files  # sorted after the first five: never read
    notes = " | ".join(found.notes)
    assert "1 file beside the class folders ignored" in notes
    assert "class 'red': 6 files, only the first 5" in notes and "class 'green': 5" not in notes
    assert "skipped 1 file that is not an image or damaged: 'green/broken.jpg'" in notes


@pytest.mark.parametrize("layout, message", [
    ({"cats": 3}, "at least two; it has only one, 'cats'"),
    ({}, "it has none"),
    ({"cats": 3, "dogs": 0}, "class 'dogs' has no images"),
    ({"cats": 3, "Cats": 2}, "ignoring case"),
    ({"cats": 3, "d" * (MAX_NAME_CHARS + 5): 2}, "cannot be a class"),
    ({"cats": 3, "tab\there": 2}, "control"),
])
def test_a_folder_that_cannot_be_taught_is_refused_with_one_message(tmp_path, layout, message):
    root = make_folder(tmp_path / "set", layout)
    with pytest.raises(ImageSetError, match=message):
        read_image_folder(root)


def test_a_class_of_files_that_are_not_images_names_them(tmp_path):
    root = make_folder(tmp_path / "set", {"cats": 3, "dogs": 0})
    for i in range(5):
        (root / "dogs" / f"d{i}.txt").write_text("woof")
    with pytest.raises(ImageSetError, match=r"class 'dogs' has no images: its 5 files are not images \('dogs/d0.txt'"):
        read_image_folder(root)
    with pytest.raises(ImageSetError, match="is not a folder"):
        read_image_folder(tmp_path / "nowhere")
    with pytest.raises(DataError):
        read_image_folder(root / "cats" / "000.png")


# --- the command line ---------------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RESNET_DEMO_OFFLINE": "1", "RESNET_DEMO_RUNS": str(cwd / "runs")}
    return subprocess.run([sys.executable, "-m", "resnet_demo", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def test_teach_a_folder_then_predict_with_the_taught_names(tmp_path):
    root = make_folder(tmp_path / "photos", {"mug": 8, "plant": 8, "Lamp shade": 8})
    (root / "mug" / "notes.txt").write_text("not an image")
    proc = cli("teach", str(root), "--out", "taught", "--from", "scratch", "--depth", "8", "--steps", "30",
               "--batch-size", "16", "--holdout", "0.25", "--project", "kitchen.teach.zip", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "held-out accuracy:" in proc.stdout and "on 6 images" in proc.stdout
    assert "skipped 1 file that is not an image" in proc.stderr
    metrics = json.loads((tmp_path / "taught" / "metrics.json").read_text())
    assert metrics["classes"] == ["Lamp shade", "mug", "plant"] and metrics["holdout_images"] == 6
    assert metrics["holdout_accuracy"] >= 0.5
    assert sorted(p.name for p in (tmp_path / "taught").iterdir()) == ["metrics.json", "model.safetensors"]
    proc = cli("predict", str(root / "plant" / "000.png"), str(root / "mug" / "001.png"), "--json",
               "--model", "taught/model.safetensors", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [len(r["top"]) for r in records] == [3, 3]
    assert {t["label"] for t in records[0]["top"]} == {"Lamp shade", "mug", "plant"}
    proc = cli("evaluate", "--weights", "taught", "--images", str(root), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n"] == 24
    proc = cli("teach", "kitchen.teach.zip", "--out", "again", "--from", "scratch", "--depth", "8", "--steps", "2",
               "--batch-size", "8", "--quiet", cwd=tmp_path)  # a project file is a source too
    assert proc.returncode == 0, proc.stderr


def test_teach_refusals_are_one_line(tmp_path):
    make_folder(tmp_path / "one", {"only": 3})
    proc = cli("teach", "one", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "at least two" in proc.stderr and not (tmp_path / "out").exists()
    make_folder(tmp_path / "two", {"a": 2, "b": 2})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "events.jsonl").write_text("")
    proc = cli("teach", "two", "--out", "run", cwd=tmp_path)
    assert proc.returncode == 1 and "holds a training run" in proc.stderr
    proc = cli("teach", "two", "--out", "x", "--holdout", "1.5", cwd=tmp_path)
    assert proc.returncode == 2 and "below 1" in proc.stderr
    proc = cli("evaluate", "--weights", str(_three_class_file(tmp_path)), cwd=tmp_path)
    assert proc.returncode == 1 and "--images DIR" in proc.stderr and "Traceback" not in proc.stderr


def _three_class_file(tmp_path: Path) -> Path:
    model = build_model(8, classes=NAMES)
    save_model(tmp_path / "three.safetensors", model, model.arch)
    return tmp_path / "three.safetensors"


def test_a_taught_model_is_not_shipped(tmp_path):
    from resnet_demo.store.ship import ship_run

    result = teach(three_classes(4), TeachConfig(start=SCRATCH, depth=8, steps=1, batch_size=8))
    save_result(result, tmp_path / "run")
    with pytest.raises(WeightsError, match="only CIFAR-10 models are shipped"):
        ship_run(tmp_path / "run", "mine", directory=tmp_path / "weights")
    assert not (tmp_path / "weights").exists()
