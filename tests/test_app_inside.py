"""The Inside page, the Paper page's Fig. 7 and the Predict page's model download, under AppTest."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from apptest_util import assert_clean, open_page

pytestmark = pytest.mark.timeout(600)

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def inside(env, weights: Path, view: str | None = None, model: str | None = None):
    """The Inside page with the view and model chosen (the browser test opens them from a shared link)."""
    env.setenv("RESNET_DEMO_WEIGHTS", str(weights))
    at = open_page("inside")
    if model:
        at.selectbox(key="model").set_value(model)
    if view:
        at.session_state["inside_view"] = view
    return at.run() if model or view else at


def predict_page():
    """The default page (Predict), which lives at "/" rather than at its url_path."""
    from streamlit.testing.v1 import AppTest

    from apptest_util import APP, TIMEOUT

    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


def captions(at) -> list[str]:
    return [c.value for c in at.caption] + [c for el in at.get("image") for c in el.captions]


def charts(at, key: str) -> list:
    return [c for c in at.get("plotly_chart") if c.proto.id.endswith(key)]


def test_renders_without_models(app_env):
    at = open_page("inside")
    assert_clean(at)
    assert at.title[0].value == "Inside the network"
    assert any("No trained model" in w.value for w in at.warning)


def test_feature_maps_of_each_stage(app_env, tiny_weights_dir):
    at = inside(app_env, tiny_weights_dir)
    assert_clean(at)
    assert at.query_params.get("view") == "maps"
    shown = captions(at)
    for text in ("Input, 32×32", "Stage 1: 16 channels of 32×32", "Stage 2: 32 channels of 16×16",
                 "Stage 3: 64 channels of 8×8"):
        assert text in shown, shown
    at.radio(key="inside_stage").set_value(3).run()
    at.slider(key="inside_channel").set_value(63).run()
    assert_clean(at)
    assert any(c.startswith("Stage 3, channel 63: values") for c in captions(at))
    at.radio(key="inside_stage").set_value(1).run()  # 16 channels: the remembered 63 is pulled back to 15
    assert_clean(at)
    assert at.slider(key="inside_channel").value == 15
    assert any(c.startswith("Stage 1, channel 15:") for c in captions(at))


def test_residual_blocks_show_f_x_and_the_shortcut(app_env, tiny_weights_dir):
    at = inside(app_env, tiny_weights_dir, view="blocks")
    assert_clean(at)
    assert list(at.select_slider(key="inside_block").options) == ["1.1", "2.1", "3.1"]  # ResNet-8: n = 1
    at.select_slider(key="inside_block").set_value("3.1").run()
    at.slider(key="inside_block_channel").set_value(60).run()
    assert_clean(at)
    shown = captions(at)
    for name in ("F(x): the residual branch · RMS", "x: the shortcut (subsampled, zero-padded) · RMS",
                 "F(x) + x · RMS", "output: ReLU(F(x) + x) · RMS"):
        assert any(c.startswith(name) for c in shown), shown
    assert any("Over all 64 channels of block 3.1: RMS of F(x)" in m.value for m in at.markdown)
    assert charts(at, "inside_rms")
    at.select_slider(key="inside_block").set_value("1.1").run()  # 16 channels
    assert_clean(at)
    assert at.slider(key="inside_block_channel").value == 15


def test_knockout_live_without_a_shipped_table(app_env, tiny_weights_dir):
    at = inside(app_env, tiny_weights_dir, view="knockout")
    assert_clean(at)
    assert any("No full-test-set knockout table is shipped for this model" in i.value for i in at.info)
    at.select_slider(key="inside_knockout_block").set_value("2.1").run()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"Intact", "Without block 2.1", "Predictions changed"}
    assert all(v.endswith("%") for v in metrics.values())
    assert any("Block 2.1 is replaced by: option-A shortcut" in c for c in captions(at))


def test_image_carries_over_from_predict(app_env, tiny_weights_dir):
    app_env.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    at = predict_page()
    index = at.selectbox(key="predict_index").value
    open_page("inside", at)
    assert_clean(at)
    assert at.radio(key="inside_source").value == "Current image"
    assert any(f"#{index}" in str(o) for o in at.radio(key="inside_source").options)


# --- with the repository's own weights ----------------------------------------------------------------------

def needs(name: str) -> dict:
    path = WEIGHTS / name
    if not path.is_file():
        pytest.skip(f"weights/{name} is not shipped")
    return json.loads(path.read_text())


def test_knockout_table_of_a_shipped_resnet(app_env):
    table = needs("knockout.json")
    at = inside(app_env, WEIGHTS, view="knockout", model="resnet56-e100")
    assert_clean(at)
    (chart,) = charts(at, "inside_knockout_chart")
    bars = json.loads(chart.proto.spec)["data"][0]
    rows = table["models"]["resnet56-e100"]["blocks"]
    assert bars["x"] == [r["block"] for r in rows]
    assert bars["y"] == pytest.approx([100 * r["accuracy"] for r in rows])
    assert any("Measured on the full CIFAR-10 test set (10,000 images" in c for c in captions(at))
    assert at.select_slider(key="inside_knockout_block").value == "1.2"
    assert {m.label for m in at.metric} == {"Intact", "Without block 1.2", "Predictions changed"}


def test_a_plain_block_has_no_shortcut(app_env):
    at = inside(app_env, WEIGHTS, view="blocks", model="plain20")
    assert_clean(at)
    assert any("A plain block has no shortcut" in m.value for m in at.markdown)
    assert any(c.startswith("F(x): the whole block · RMS") for c in captions(at))


def test_paper_fig7_from_the_shipped_table(app_env):
    table = needs("fig7.json")
    app_env.setenv("RESNET_DEMO_WEIGHTS", str(WEIGHTS))
    at = open_page("paper")
    assert_clean(at)
    order, ranked = charts(at, "paper_fig7_order"), charts(at, "paper_fig7_sorted")
    assert order and ranked
    lines = {t["name"]: t["y"] for t in json.loads(order[0].proto.spec)["data"]}
    assert set(lines) == {"Plain-20", "Plain-56", "ResNet-20", "ResNet-56", "ResNet-110"}
    assert lines["ResNet-110"] == pytest.approx(table["models"]["resnet110-e100"]["std"])
    ranked_lines = {t["name"]: t["y"] for t in json.loads(ranked[0].proto.spec)["data"]}
    assert ranked_lines["Plain-56"] == sorted(lines["Plain-56"], reverse=True)
    assert any("closer to zero than their plain counterparts" in m.value and "This project's models agree" in m.value
               for m in at.markdown)  # plain-20 > ResNet-20, plain-56 > ResNet-56, ResNet-20 > 56 > 110
    assert any("measured on all 10,000 test images" in c.value for c in at.caption)


def test_paper_fig7_measures_live_without_the_table(app_env, tmp_path):
    """No fig7.json: the shipped plain-20 and ResNet-20 are measured on the shipped test images instead."""
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    keep = {k: v for k, v in manifest["models"].items() if k in ("plain20", "resnet20-e100")}
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "manifest.json").write_text(json.dumps({"models": keep}))
    for rec in keep.values():
        for key in ("file", "history", "predictions"):
            os.symlink(WEIGHTS / rec[key], weights / rec[key])
    os.symlink(WEIGHTS / "test_images.npz", weights / "test_images.npz")
    app_env.setenv("RESNET_DEMO_WEIGHTS", str(weights))
    at = open_page("paper")
    assert_clean(at)
    lines = {t["name"] for t in json.loads(charts(at, "paper_fig7_order")[0].proto.spec)["data"]}
    assert lines == {"Plain-20", "ResNet-20"}
    assert any("Plain-20, ResNet-20: measured here on 500 shipped test images" in c.value for c in at.caption)


def test_predict_offers_the_model_for_download(app_env, tiny_weights_dir):
    app_env.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    at = predict_page()
    assert_clean(at)
    labels = sorted(b.proto.label for b in at.get("download_button"))
    assert labels == ["onnx (resnet8.onnx)", "safetensors (resnet8.safetensors)"]
