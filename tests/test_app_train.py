"""The Train page under AppTest: renders with and without models; a tiny CPU run starts, updates, stops."""
from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from apptest_util import APP, TIMEOUT, assert_clean, open_page
from resnet_demo.app import live
from resnet_demo.server import jobs

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def env(tmp_path, monkeypatch, synthetic_data_dir):
    monkeypatch.setenv("RESNET_DEMO_DATA", str(synthetic_data_dir))
    monkeypatch.setenv("RESNET_DEMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("RESNET_DEMO_WEIGHTS", str(tmp_path / "no-weights"))
    yield tmp_path
    jobs.stop(tmp_path / "runs", force=True)


def test_renders_without_models(env):
    at = open_page("train")
    assert_clean(at)
    assert at.title[0].value == "Train a ResNet"
    assert any("No training run yet" in s.value for s in at.subheader)
    assert not at.button(key="train_start").disabled
    # an invalid custom depth is explained and blocks Start
    at.selectbox(key="train_depth").set_value("other").run()
    at.number_input(key="train_depth_other").set_value(21).run()
    assert_clean(at)
    assert any("6n+2" in e.value for e in at.error)
    assert at.button(key="train_start").disabled


def test_renders_with_shipped_models_and_compares_them(env, monkeypatch, tiny_weights_dir, tiny_run):
    monkeypatch.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    monkeypatch.setenv("RESNET_DEMO_RUNS", str(tiny_run.parent))
    at = open_page("train")
    assert_clean(at)
    compare = at.multiselect(key="train_compare")
    assert "resnet8" in compare.options[0] or "resnet8" in compare.value
    assert set(compare.value) >= {"resnet8"}
    charts = [c for c in at.get("plotly_chart") if "train_chart_compare" in str(c.proto.id)] or at.get("plotly_chart")
    spec = json.loads(charts[-1].proto.spec)
    dashes = {t.get("line", {}).get("dash") for t in spec["data"]}
    assert "dash" in dashes  # training error dashed, as in the paper's Fig. 6
    # the finished tiny run is shown with its final accuracy
    assert any("Finished" in s.value for s in at.success)


def _loss_points(at: AppTest) -> int:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if "Training loss" in json.dumps(spec.get("layout", {}).get("title", {})):
            return len(spec["data"][0]["x"])
    return 0


@pytest.mark.slow
def test_start_watch_and_stop_a_tiny_run(env, monkeypatch):
    # every rerun reads the job afresh (a server reads at most once a second)
    monkeypatch.setattr(live, "REFRESH_S", 0.0)
    runs = env / "runs"
    at = open_page("train")
    at.selectbox(key="train_depth").set_value("other").run()
    at.number_input(key="train_depth_other").set_value(8)
    at.number_input(key="train_epochs_classroom").set_value(300)
    at.number_input(key="train_subset_cpu").set_value(64)
    at.number_input(key="train_test_subset_cpu").set_value(32)
    at.number_input(key="train_batch_classroom").set_value(32)
    at.run()
    assert_clean(at)
    at.button(key="train_start").click().run()
    assert_clean(at)
    lock = jobs.active(runs)
    assert lock is not None
    run_id = lock["run_id"]
    assert at.button(key="train_start").disabled  # no second job from this (or any) tab

    jobs.wait(run_id, runs, timeout=180, until=lambda s: len([e for e in s.events if e["type"] == "step"]) >= 2)
    at.run()
    assert_clean(at)
    first = _loss_points(at)
    assert first >= 2
    jobs.wait(run_id, runs, timeout=180, until=lambda s: len([e for e in s.events if e["type"] == "step"]) > first)
    at.run()
    assert _loss_points(at) > first  # the chart follows the event file
    assert at.get("progress")  # progress bar with step / ETA / images per second
    assert "images/s" in at.get("progress")[0].proto.text
    import torch

    from resnet_demo.base.device import precision_label, resolve_precision

    used = precision_label(resolve_precision("auto", torch.device("cpu")))  # what the app's default trains in
    assert any(used in c.value for c in at.caption)

    # a second session (another tab, another student) sees the same job
    other = open_page("train")
    assert other.button(key="train_start").disabled
    assert any("ResNet-8" in s.value for s in other.subheader)

    at.button(key="train_stop").click().run()
    assert_clean(at)
    s = jobs.wait(run_id, runs, timeout=120)
    assert s.state == "stopped" and s.has_checkpoint
    at.run()
    assert_clean(at)
    assert not at.button(key="train_start").disabled
    assert at.button(key="train_resume")  # a stopped run offers Resume
    assert any("checkpoint is kept" in i.value for i in at.info)


def _copy_run(tiny_run, runs, run_id: str, keep=lambda e: True, **metrics) -> list[dict]:
    """The tiny finished run copied as `run_id`: its events filtered by `keep`, its metrics.json updated (or
    removed with metrics=None); returns the events kept."""
    import shutil

    out = shutil.copytree(tiny_run, runs / run_id)
    events = [e for e in (json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()) if keep(e)]
    for e in events:
        if e["type"] == "end" and "test_accuracy" in metrics:
            e["test_accuracy"] = metrics["test_accuracy"]
    (out / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    if metrics.get("metrics", True) is None:
        (out / "metrics.json").unlink()
    else:
        record = json.loads((out / "metrics.json").read_text())
        (out / "metrics.json").write_text(json.dumps({**record, **metrics}))
    return events


def test_final_evaluation_is_said_not_an_eta_of_zero(env, tiny_run):
    """Issue 28: a 1-step run sat at "running … ETA 0 s" for 52 s while the whole test set was evaluated. The
    trainer now says when its final evaluation starts (a "phase" event), and the page says so."""
    import subprocess
    import sys

    runs = env / "runs"
    events = _copy_run(tiny_run, runs, "evaluating", keep=lambda e: e["type"] != "end", metrics=None)
    assert events[-1]["type"] == "phase" and events[-1]["phase"] == "final_evaluation"  # the trainer's own record
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "evaluating"])
    try:
        (runs / jobs.ACTIVE_FILE).write_text(json.dumps({"run_id": "evaluating", "pid": trainer.pid}))
        at = open_page("train")
        assert_clean(at)
        (bar,) = at.get("progress")
        assert "final evaluation on 320 test images" in bar.proto.text and "ETA" not in bar.proto.text
    finally:
        trainer.kill()
        trainer.wait()


def test_a_chance_level_run_is_not_offered_as_a_model(env, tiny_run):
    runs = env / "runs"
    _copy_run(tiny_run, runs, "guess", test_accuracy=0.1)
    at = open_page("train")
    assert_clean(at)
    assert any("no better than guessing" in w.value and "not offered as a model" in w.value for w in at.warning)
    assert not at.success
    compare = at.multiselect(key="train_compare")  # its curve can still be compared, marked as such
    assert compare.options == [f"ResNet-8 · run guess · {'classroom preset, 2 epochs'} · 10.0% (chance level)"]
    predict = AppTest.from_file(APP, default_timeout=TIMEOUT).run()  # Predict, the home page
    assert_clean(predict)
    assert any("No trained model" in w.value for w in predict.warning)  # the only model was at chance level


def test_training_images_cannot_be_fewer_than_one_batch(env):
    """Issue 28: the field accepted 16 images and then disabled Start; its lower bound is now one batch."""
    at = open_page("train")
    subset = at.number_input(key="train_subset_cpu")
    batch = at.number_input(key="train_batch_classroom")
    assert subset.min == batch.value
    batch.set_value(512).run()
    assert at.number_input(key="train_subset_cpu").min == 512
    at.number_input(key="train_subset_cpu").set_value(700).run()
    at.number_input(key="train_batch_classroom").set_value(1024).run()  # the batch outgrows what was typed
    assert_clean(at)
    assert at.number_input(key="train_subset_cpu").value == 1024 and not at.button(key="train_start").disabled
    at.number_input(key="train_batch_classroom").set_value(256).run()  # ...and the number stays when it shrinks
    assert at.number_input(key="train_subset_cpu").value == 1024 and at.number_input(key="train_subset_cpu").min == 256


def test_without_the_full_set_the_page_says_what_it_trains_on(app_env):
    # A new user's machine: no data set, no internet. The classroom preset trains on the built-in subset and says
    # so before Start; a run that needs the full set says how to get it and cannot start; the download explains
    # itself when there is no network.
    at = open_page("train")
    assert_clean(at)
    assert any(i.value.startswith("No full CIFAR-10 found; training on the built-in 5,000-image subset")
               for i in at.info)
    assert not at.button(key="train_start").disabled
    assert at.number_input(key="train_epochs_classroom").value == 32  # the preset's cap for a small set
    at.selectbox(key="train_preset").set_value("fast").run()
    at.number_input(key="train_subset_cpu").set_value(50_000).run()
    assert_clean(at)
    assert any("`python -m resnet_demo download`" in w.value for w in at.warning)
    assert at.button(key="train_start").disabled
    at.button(key="train_download").click().run()
    assert_clean(at)
    assert any(e.value.startswith("The download failed: downloads are switched off") and
               "cifar-10-batches-py" in e.value for e in at.error)
    for element in [*at.info, *at.warning, *at.error]:
        assert "../" not in element.value


def test_a_crashed_run_says_what_to_do_and_shows_no_server_path(env):
    """A trainer that died with a traceback: the page says what happened in words, offers to start it again (it
    had no checkpoint), and shows nothing of the exception's text or the server's folders; train.log keeps them."""
    from resnet_demo.training.config import TrainConfig

    runs = env / "runs"
    out = runs / "20260101-000000-resnet8"
    out.mkdir(parents=True)
    settings = TrainConfig(depth=8, subset=128, batch_size=32, device="cpu")
    (out / jobs.JOB_FILE).write_text(json.dumps({"args": settings.to_args(run_only=True)}))
    line = f"FileNotFoundError: [Errno 2] No such file or directory: '{out}/checkpoint.safetensors'"
    (out / jobs.LOG_FILE).write_text(f"{jobs.LAUNCH_MARK}x: python -m resnet_demo train --out {out}\nTraceback (most "
                                     f"recent call last):\n  File \"{out}/x.py\", line 9, in _setup\n{line}\n")
    at = open_page("train")
    assert_clean(at)
    assert [e.value for e in at.error] == [f"Training failed: {jobs.INTERNAL_ERROR}"]
    assert "train.log" in jobs.INTERNAL_ERROR
    assert not at.button(key="train_restart").disabled
    shown = " ".join(str(getattr(node, "proto", "")) for node in at._tree)
    assert str(env) not in shown and "Errno" not in shown and "FileNotFoundError" not in shown
    assert jobs.status(out.name, runs).detail == line  # the detail stays for the log and the command line
