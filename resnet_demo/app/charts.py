"""Plotly figures of training histories (lists of events, see events.py): live curves and run comparisons.

Errors are in percent, as in the paper's figures. Train error/accuracy is the running value over each epoch
on augmented batches; test values are measured on the (possibly subsetted) test images after each epoch.
"""
from __future__ import annotations

import plotly.graph_objects as go

from ..events import epochs as epoch_rows
from ..events import iter_type

MAX_POINTS = 1500  # per line: more points only slow the browser
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")


def _thin(rows: list[dict]) -> list[dict]:
    if len(rows) <= MAX_POINTS:
        return rows
    stride = -(-len(rows) // MAX_POINTS)
    return rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])


def _layout(fig: go.Figure, title: str, xaxis: str, yaxis: str, height: int = 300) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=15)), height=height,
                      margin=dict(l=55, r=15, t=45, b=45), template="plotly_white",
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
                      hovermode="x unified", uirevision="keep")  # keep zoom while the chart refreshes
    fig.update_xaxes(title_text=xaxis)
    fig.update_yaxes(title_text=yaxis)
    return fig


def _mode(x: list) -> str:
    """Markers too while a curve has few points (one epoch would otherwise draw nothing)."""
    return "lines+markers" if len(x) < 12 else "lines"


def _steps(events: list[dict]) -> list[dict]:
    """Step records of the latest attempt at each step (a resumed run repeats none, later ones win)."""
    by_step: dict[int, dict] = {}
    for e in iter_type(events, "step"):
        by_step[int(e["step"])] = e
    return [by_step[k] for k in sorted(by_step)]


def loss_figure(events: list[dict]) -> go.Figure:
    rows = _thin(_steps(events))
    fig = go.Figure(go.Scatter(x=[r["epoch"] for r in rows], y=[r["loss"] for r in rows], mode="lines",
                               name="training loss", line=dict(color=PALETTE[0], width=1.5)))
    return _layout(fig, "Training loss (per step)", "epoch", "cross-entropy loss")


def lr_figure(events: list[dict]) -> go.Figure:
    rows = _thin(_steps(events))
    fig = go.Figure(go.Scatter(x=[r["epoch"] for r in rows], y=[r["lr"] for r in rows], mode="lines",
                               name="learning rate", line=dict(color=PALETTE[3], width=1.5, shape="hv")))
    return _layout(fig, "Learning rate", "epoch", "lr")


def accuracy_figure(events: list[dict]) -> go.Figure:
    rows = epoch_rows(events)
    x = [r["epoch"] for r in rows]
    fig = go.Figure([
        go.Scatter(x=x, y=[100 * r["train_acc"] for r in rows], mode="lines+markers", name="train",
                   line=dict(color=PALETTE[0], dash="dash")),
        go.Scatter(x=x, y=[100 * r["test_acc"] for r in rows], mode="lines+markers", name="test",
                   line=dict(color=PALETTE[1])),
    ])
    fig = _layout(fig, "Accuracy (per epoch)", "epoch", "accuracy (%)")
    if len(x) == 1:
        fig.update_xaxes(range=[0.5, 1.5], dtick=1)
    return fig


def error_figure(histories: list[tuple[str, list[dict]]], title: str = "Training (dashed) and test (solid) error",
                 height: int = 420, train: bool = True, test: bool = True) -> go.Figure:
    """The paper's Fig. 6 style: one colour per run, training error dashed, test error solid, vs epoch."""
    traces = []
    for i, (label, events) in enumerate(histories):
        rows = epoch_rows(events)
        x = [r["epoch"] for r in rows]
        color = PALETTE[i % len(PALETTE)]
        if train:
            traces.append(go.Scatter(x=x, y=[100 * (1 - r["train_acc"]) for r in rows], mode=_mode(x),
                                     name=f"{label} train", legendgroup=label,
                                     line=dict(color=color, dash="dash", width=1.6)))
        if test:
            traces.append(go.Scatter(x=x, y=[100 * (1 - r["test_acc"]) for r in rows], mode=_mode(x),
                                     name=f"{label} test", legendgroup=label, line=dict(color=color, width=2.2)))
    fig = _layout(go.Figure(traces), title, "epoch", "error (%)", height=height)
    fig.update_layout(hovermode="closest", legend=dict(orientation="v", y=1.0, yanchor="top", x=1.02,
                                                       xanchor="left"))
    fig.update_yaxes(rangemode="tozero")
    return fig
