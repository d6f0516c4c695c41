"""Plotly figures of training histories (lists of events, see events.py): live curves and run comparisons.

Errors are in percent, as in the paper's figures. Train error/accuracy is the running value over each epoch
on augmented batches; test values are measured on the (possibly subsetted) test images after each epoch.
"""
from __future__ import annotations

import plotly.graph_objects as go

from resnet_demo.store.events import epochs as epoch_rows
from resnet_demo.store.events import iter_type

from .style import PALETTE, style

MAX_POINTS = 1500  # per line: more points only slow the browser
History = tuple[str, list[dict]]  # (label, events)


def _thin(rows: list[dict]) -> list[dict]:
    if len(rows) <= MAX_POINTS:
        return rows
    stride = -(-len(rows) // MAX_POINTS)
    return rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])


def _mode(x: list) -> str:
    """Markers too while a curve has few points (one epoch would otherwise draw nothing)."""
    return "lines+markers" if len(x) < 12 else "lines"


def _steps(events: list[dict]) -> list[dict]:
    """Step records of the latest attempt at each step (a resumed run repeats none, later ones win)."""
    by_step: dict[int, dict] = {}
    for e in iter_type(events, "step"):
        by_step[int(e["step"])] = e
    return [by_step[k] for k in sorted(by_step)]


def _live(fig: go.Figure, title: str, yaxis: str, height: int = 300) -> go.Figure:
    """A live training chart: one x axis in epochs, every trace read at once on hover."""
    fig = style(fig, height, title, "epoch", yaxis)
    fig.update_layout(hovermode="x unified")
    return fig


def loss_figure(events: list[dict]) -> go.Figure:
    rows = _thin(_steps(events))
    fig = go.Figure(go.Scatter(x=[r["epoch"] for r in rows], y=[r["loss"] for r in rows], mode="lines",
                               name="training loss", line=dict(color=PALETTE[0], width=1.5)))
    return _live(fig, "Training loss (per step)", "cross-entropy loss")


def lr_figure(events: list[dict], height: int = 220) -> go.Figure:
    rows = _thin(_steps(events))
    fig = go.Figure(go.Scatter(x=[r["epoch"] for r in rows], y=[r["lr"] for r in rows], mode="lines",
                               name="learning rate", line=dict(color=PALETTE[3], width=1.5, shape="hv")))
    return _live(fig, "Learning rate", "lr", height)


def accuracy_figure(events: list[dict]) -> go.Figure:
    rows = epoch_rows(events)
    x = [r["epoch"] for r in rows]
    tested = _tested(rows, "test_acc")  # a run evaluated every N epochs (--eval-every) has test points at those
    fig = go.Figure([
        go.Scatter(x=x, y=[100 * r["train_acc"] for r in rows], mode="lines+markers", name="train",
                   line=dict(color=PALETTE[0], dash="dash")),
        go.Scatter(x=[r["epoch"] for r in tested], y=[100 * r["test_acc"] for r in tested], mode="lines+markers",
                   name="test", line=dict(color=PALETTE[1])),
    ])
    fig = _live(fig, "Accuracy (per epoch)", "accuracy (%)")
    if len(x) == 1:
        fig.update_xaxes(range=[0.5, 1.5], dtick=1)
    return fig


def _tested(rows: list[dict], key: str) -> list[dict]:
    """The rows that hold `key`: every epoch has train figures, test figures only where they were evaluated."""
    return [r for r in rows if r.get(key) is not None]


def _epochs_of(events: list[dict], key: str) -> list[int]:
    return [r["epoch"] for r in _tested(epoch_rows(events), key)]


def _errors(events: list[dict], key: str) -> list[float]:
    return [100 * (1 - r[key]) for r in _tested(epoch_rows(events), key)]


def error_range(*groups: list[History]) -> list[float]:
    """One y range (0 to the highest error, a little headroom) for every panel that draws these histories, so
    panels side by side compare at a glance, as the paper's Fig. 6 panels do."""
    top = max((y for histories in groups for _, events in histories
               for key in ("train_acc", "test_acc") for y in _errors(events, key)), default=100.0)
    return [0.0, min(100.0, top * 1.05) or 100.0]


def error_figure(histories: list[History], title: str = "Training (dashed) and test (solid) error",
                 height: int = 420, train: bool = True, test: bool = True,
                 y_range: list[float] | None = None) -> go.Figure:
    """The paper's Fig. 6 style: one colour per run, training error dashed, test error solid, vs epoch."""
    traces = []
    for i, (label, events) in enumerate(histories):
        color = PALETTE[i % len(PALETTE)]
        if train:
            x = _epochs_of(events, "train_acc")
            traces.append(go.Scatter(x=x, y=_errors(events, "train_acc"), mode=_mode(x), name=f"{label} train",
                                     legendgroup=label, line=dict(color=color, dash="dash", width=1.6)))
        if test:
            x = _epochs_of(events, "test_acc")
            traces.append(go.Scatter(x=x, y=_errors(events, "test_acc"), mode=_mode(x), name=f"{label} test",
                                     legendgroup=label, line=dict(color=color, width=2.2)))
    fig = style(go.Figure(traces), height, title, "epoch", "error (%)", legend="right")
    fig.update_layout(hovermode="closest")
    if y_range:
        fig.update_yaxes(range=y_range)
    else:
        fig.update_yaxes(rangemode="tozero")
    return fig
