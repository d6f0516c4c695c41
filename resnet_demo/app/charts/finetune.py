"""Plotly figures of a fine-tune on the Teach page, from training/teach.py's events: the loss at every step and
the accuracy, on the training batches (dashed) and on the held-out images (solid), one colour per run, so a
comparison draws the network that started trained beside the one that started from random weights.
"""
from __future__ import annotations

import plotly.graph_objects as go

from .style import PALETTE, style

RUN_NAMES = {"taught": "fine-tune", "trained": "from a trained network", "scratch": "from random weights"}
SMOOTH = 10  # steps averaged for the batch accuracy: one batch of a few dozen images is a noisy score


def _runs(events: list[dict]) -> list[str]:
    """The runs' tags in the order they began."""
    seen: list[str] = []
    for e in events:
        tag = e.get("run", "taught")
        if tag not in seen:
            seen.append(tag)
    return seen


def _of(events: list[dict], tag: str, kind: str) -> list[dict]:
    return [e for e in events if e.get("type") == kind and e.get("run", "taught") == tag]


def _color(tag: str) -> str:
    return PALETTE[1] if tag == "scratch" else PALETTE[0]


def _smoothed(values: list[float]) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - SMOOTH] if i >= SMOOTH else 0.0)
        out.append(total / min(i + 1, SMOOTH))
    return out


def loss_figure(events: list[dict], height: int = 280) -> go.Figure:
    traces = []
    for tag in _runs(events):
        steps = _of(events, tag, "step")
        traces.append(go.Scatter(x=[e["step"] for e in steps], y=[e["loss"] for e in steps], mode="lines",
                                 name=RUN_NAMES.get(tag, tag), line=dict(color=_color(tag), width=1.6)))
    fig = style(go.Figure(traces), height, "Training loss", "step", "cross-entropy loss")
    fig.update_layout(hovermode="x unified")
    return fig


def _held_out(events: list[dict], tag: str) -> tuple[list[int], list[float]]:
    points = [(e["step"], e["holdout_accuracy"]) for e in _of(events, tag, "eval")]
    points += [(e["step"], e["holdout_accuracy"]) for e in _of(events, tag, "end")
               if e.get("holdout_accuracy") is not None]
    return [s for s, _ in points], [100 * a for _, a in points]


def accuracy_figure(events: list[dict], height: int = 280) -> go.Figure:
    traces = []
    for tag in _runs(events):
        name, color = RUN_NAMES.get(tag, tag), _color(tag)
        steps = _of(events, tag, "step")
        traces.append(go.Scatter(x=[e["step"] for e in steps], y=_smoothed([100 * e["acc"] for e in steps]),
                                 mode="lines", name=f"{name}: training batches", legendgroup=tag,
                                 line=dict(color=color, dash="dash", width=1.4)))
        x, y = _held_out(events, tag)
        traces.append(go.Scatter(x=x, y=y, mode="lines+markers", name=f"{name}: held out", legendgroup=tag,
                                 line=dict(color=color, width=2.4)))
    fig = style(go.Figure(traces), height, "Accuracy", "step", "accuracy (%)")
    fig.update_layout(hovermode="x unified", yaxis=dict(range=[0, 104]))
    return fig
