"""The chart modules: one look for every figure, and the fixes a class noticed (issue 28): an upload's top guess is
not painted red, the per-class axis starts at 0 %, the two Fig. 6 panels share one y range."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("plotly")

from resnet_demo.app.charts import curves, predictions, testset  # noqa: E402
from resnet_demo.app.charts.style import BLUE, FONT_SIZE, GREEN, GREY, PALETTE, RED  # noqa: E402
from resnet_demo.nets.paper import CLASSES  # noqa: E402


def _history(errors: list[tuple[float, float]]) -> list[dict]:
    """Epoch events with these (train, test) errors in percent."""
    return [{"type": "epoch", "epoch": i + 1, "train_acc": 1 - tr / 100, "test_acc": 1 - te / 100}
            for i, (tr, te) in enumerate(errors)]


def _probs(top: int) -> torch.Tensor:
    p = torch.full((10,), 0.02)
    p[top] = 0.82
    return p


def test_an_upload_top_guess_is_neutral_a_test_image_is_judged():
    cat = CLASSES.index("cat")
    upload = predictions.top5_figure(_probs(cat), None).data[0]
    assert upload.y[-1] == "cat" and upload.marker.color[-1] == BLUE
    assert RED not in upload.marker.color and set(upload.marker.color[:-1]) == {GREY}
    right = predictions.top5_figure(_probs(cat), cat).data[0]
    assert right.marker.color[-1] == GREEN and RED not in right.marker.color
    wrong = predictions.top5_figure(_probs(cat), CLASSES.index("dog")).data[0]
    assert wrong.marker.color[-1] == RED


def test_class_names_have_room_beside_the_bars():
    fig = predictions.top5_figure(_probs(CLASSES.index("automobile")), None)
    assert fig.layout.yaxis.automargin and fig.layout.margin.l >= predictions.LABEL_PX > 0


def test_per_class_axis_starts_at_zero():
    fig = testset.per_class_bars({"a": [0.95] * 10, "b": [0.9] * 10})
    assert fig.layout.yaxis.range[0] == 0 and fig.layout.yaxis.range[1] >= 100


def test_fig6_panels_share_one_y_range():
    plain = [("Plain-20", _history([(60, 62), (30, 35)])), ("Plain-56", _history([(70, 71), (40, 44)]))]
    resid = [("ResNet-20", _history([(50, 52), (12, 15)]))]
    y = curves.error_range(plain, resid)
    assert y[0] == 0 and 71 <= y[1] <= 100
    figs = [curves.error_figure(h, y_range=y) for h in (plain, resid)]
    assert figs[0].layout.yaxis.range == figs[1].layout.yaxis.range == tuple(y)
    assert curves.error_range([]) == [0.0, 100.0]


def test_a_history_evaluated_every_few_epochs_draws_its_test_points_where_they_are():
    events = _history([(50, 55), (40, 45), (30, 33)])
    for e in events[:2]:  # --eval-every 3: the first two epochs have no test figures
        e["test_acc"] = e["test_loss"] = None
    accuracy = curves.accuracy_figure(events)
    assert list(accuracy.data[0].x) == [1, 2, 3] and list(accuracy.data[1].x) == [3]
    assert list(accuracy.data[1].y) == [pytest.approx(67.0)]
    errors = curves.error_figure([("ResNet-20", events)])
    assert [list(t.x) for t in errors.data] == [[1, 2, 3], [3]]
    assert curves.error_range([("ResNet-20", events)])[1] == pytest.approx(52.5)  # the train errors count too


def test_every_figure_has_the_shared_look():
    events = [{"type": "step", "step": 1, "epoch": 0.5, "loss": 2.0, "lr": 0.1}, *_history([(50, 55)])]
    figures = [curves.loss_figure(events), curves.lr_figure(events), curves.accuracy_figure(events),
               curves.error_figure([("a", events)]), testset.per_class_bars({"a": [0.5] * 10}),
               testset.confusion_figure([[1] * 10] * 10), predictions.top5_figure(_probs(0), None)]
    for fig in figures:
        assert fig.layout.font.size == FONT_SIZE and fig.layout.template.layout.colorway is not None
        assert tuple(fig.layout.colorway) == PALETTE
