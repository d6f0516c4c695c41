"""The Test-set page under Streamlit's AppTest: renders from shipped files alone, survives missing pieces, and
picking a confusion cell shows that cell's images."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from resnet_demo.nets.paper import CLASSES

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from apptest_util import TIMEOUT  # noqa: E402
from resnet_demo.app.charts.testset import cell_from_selection, confusion_figure, per_class_bars  # noqa: E402
from resnet_demo.app.pages.testset_page import CELL_MAX, PAGE_SIZE  # noqa: E402

SCRIPT = "from resnet_demo.app.pages import testset_page\ntestset_page.render()\n"


@pytest.fixture
def env(app_env):
    return app_env


def _app() -> AppTest:
    at = AppTest.from_string(SCRIPT, default_timeout=TIMEOUT)
    return at.run()


def _captions(at: AppTest) -> list[list[str]]:
    """The captions of each image grid (one st.image call with a list) on the page, top to bottom."""
    return [el.captions for el in at.get("image")]


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_renders_from_shipped_files(env, tiny_weights_dir):
    env.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    at = _app()
    _ok(at)
    assert [s.value for s in at.subheader] == ["Per-class accuracy", "Confusion matrix", "Misclassified images"]
    assert at.metric[0].label == "Test accuracy" and at.metric[0].value.endswith("%")
    assert at.selectbox(key="model").value == "resnet8"
    # the default cell is the most common confusion (or a diagonal cell if there is no mistake at all)
    assert at.selectbox(key="ts_true").value in CLASSES and at.selectbox(key="ts_pred").value in CLASSES
    # no re-evaluate button without a local test set
    assert not [b for b in at.button if b.key == "ts_reevaluate"]


def test_picking_a_cell_shows_its_images(env, tiny_weights_dir):
    env.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    preds = dict(np.load(tiny_weights_dir / "resnet8.preds.npz"))
    at = _app()
    for t in range(len(CLASSES)):  # a diagonal cell: the shipped gallery holds 12 correct images per class
        n_correct = int(((preds["labels"] == t) & (preds["pred"] == t)).sum())
        if n_correct:
            break
    at.selectbox(key="ts_true").set_value(CLASSES[t])
    at.selectbox(key="ts_pred").set_value(CLASSES[t]).run()
    _ok(at)
    cell = _captions(at)[0]
    # Without the test set the cell shows the most confident of its *shipped* images, as many as fit.
    from resnet_demo.data.testimages import read_test_images

    shipped = read_test_images(tiny_weights_dir)
    correct = np.flatnonzero((preds["labels"] == t) & (preds["pred"] == t))
    assert 0 < len(cell) == min(sum(int(i) in shipped for i in correct), CELL_MAX)
    assert all(re.fullmatch(r"#\d+ · \d+%", c) for c in cell), cell  # the heading names the classes
    assert any(f"**{n_correct:,}** test images of a **{CLASSES[t]}** were classified correctly" in m.value
               for m in at.markdown)


def test_mistake_gallery_filters_and_sorts(env, tiny_weights_dir):
    env.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    preds = dict(np.load(tiny_weights_dir / "resnet8.preds.npz"))
    wrong = np.flatnonzero(preds["pred"] != preds["labels"])
    if not len(wrong):
        pytest.skip("the tiny model made no mistakes, so there is no gallery to check")
    at = _app()
    gallery = _captions(at)[-1]
    conf = [float(c.split("(")[-1].rstrip("%)")) for c in gallery]
    assert len(gallery) == min(len(wrong), PAGE_SIZE) and conf == sorted(conf, reverse=True)
    true_c = CLASSES[int(preds["labels"][wrong[0]])]
    at.selectbox(key="ts_gallery_true").set_value(true_c).run()
    _ok(at)
    captions = _captions(at)[-1]
    lines = [c.split("  \n") for c in captions]  # two lines (a Markdown break): "#index true", "→ predicted (p%)"
    assert lines and all(first.split(" ")[1] == true_c and second.startswith("→ ") for first, second in lines)


def test_no_models_is_a_message(env, tmp_path):
    env.setenv("RESNET_DEMO_WEIGHTS", str(tmp_path / "empty-weights"))
    at = _app()
    _ok(at)
    assert any("No trained model is available yet" in w.value for w in at.warning)


def test_model_without_predictions_or_images(env, tiny_weights_dir, tmp_path):
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    (weights / "resnet8.preds.npz").unlink()
    (weights / "test_images.npz").unlink()
    env.setenv("RESNET_DEMO_WEIGHTS", str(weights))
    at = _app()
    _ok(at)
    assert any("no per-image predictions" in i.value for i in at.info)
    assert "Confusion matrix" in [s.value for s in at.subheader]


def _figures(at: AppTest) -> dict[str, dict]:
    return {c.proto.id.split("-")[-1]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def test_summaries_from_predictions_alone_match_the_record(env, tiny_weights_dir, tmp_path):
    """A model whose record lacks per-class accuracy and the confusion matrix is summarised from its per-image
    predictions the way evaluate summarises a test pass: the page draws the same figures either way."""
    env.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    recorded = _figures(_app())
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    manifest = json.loads((weights / "manifest.json").read_text())
    for key in ("per_class", "confusion"):
        del manifest["models"]["resnet8"][key]
    (weights / "manifest.json").write_text(json.dumps(manifest))
    env.setenv("RESNET_DEMO_WEIGHTS", str(weights))
    at = _app()
    _ok(at)
    summarised = _figures(at)
    assert len(recorded) == len(summarised) == 2
    for a, b in zip(recorded.values(), summarised.values()):
        assert [(t.get("y"), t.get("z")) for t in a["data"]] == [(t.get("y"), t.get("z")) for t in b["data"]]
        assert [t.get("text") for t in a["data"]] == [t.get("text") for t in b["data"]]
    bars = next(iter(summarised.values()))
    assert bars["layout"]["yaxis"]["range"][0] == 0  # issue 28: the per-class axis starts at 0 %, not 70 %


def test_reevaluate_with_local_test_set(env, tiny_weights_dir, synthetic_data_dir):
    env.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    env.setenv("RESNET_DEMO_DATA", str(synthetic_data_dir))
    at = _app()
    _ok(at)
    at.button(key="ts_reevaluate").click().run()
    _ok(at)
    table = at.dataframe[0].value
    assert list(table.columns) == ["", "recorded", "re-evaluated now"]
    row = table.set_index("").loc["test accuracy (%)"]
    assert row["recorded"] == row["re-evaluated now"]  # same weights, same images, same (single-view) numbers


def test_cell_from_selection_and_figures():
    assert cell_from_selection([{"x": "cat", "y": "dog", "point_index": 53}]) == (5, 3)
    assert cell_from_selection([]) is None and cell_from_selection([{"x": 1, "y": 2}]) is None
    conf = np.diag(np.full(10, 90)) + 1
    fig = confusion_figure(conf, selected=(5, 3))
    assert [t.type for t in fig.data] == ["heatmap", "heatmap", "scatter"] and len(fig.data[2].x) == 100
    assert fig.layout.shapes[0].x0 == 2.5 and fig.layout.shapes[0].y0 == 4.5
    bars = per_class_bars({"a": [0.9] * 10, "b": [None] + [0.5] * 9})
    assert len(bars.data) == 2 and bars.data[1].y[0] is None and bars.layout.barmode == "group"
