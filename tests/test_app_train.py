"""The Train page under AppTest: renders with and without models; a tiny CPU run starts, updates, stops."""
from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from apptest_util import assert_clean, open_page

from resnet_demo import jobs

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
    at.selectbox(key="train_depth_choice").set_value("other").run()
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


def test_start_watch_and_stop_a_tiny_run(env):
    runs = env / "runs"
    at = open_page("train")
    at.selectbox(key="train_depth_choice").set_value("other").run()
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

    from resnet_demo.train import precision_label, resolve_precision

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


def test_without_the_full_set_the_page_says_what_it_trains_on(app_env):
    # A new user's machine: no data set, no internet. The classroom preset trains on the built-in subset and says
    # so before Start; a run that needs the full set says how to get it and cannot start; the download explains
    # itself when there is no network.
    at = open_page("train")
    assert_clean(at)
    assert any(i.value.startswith("No full CIFAR-10 found; training on the built-in 5,000-image subset")
               for i in at.info)
    assert not at.button(key="train_start").disabled
    assert at.number_input(key="train_epochs_classroom").value == 30  # the same steps as 3 epochs of 50,000
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
