"""A prediction's top five classes as horizontal bars, the most likely on top.

Colour says correctness only when it is known: for a test image the top guess is green when right and red when
wrong (the true class, if lower down, green too); for an upload or a photo nobody has told the network the
answer, so its top guess is blue, never red: a confident, correct "cat" must not look wrong.
"""
from __future__ import annotations

import plotly.graph_objects as go
import torch

from resnet_demo.nets.inference import top_k
from resnet_demo.nets.paper import CLASSES

from .style import BLUE, GREEN, GREY, RED, style

LABEL_PX = 92  # room for the longest CIFAR-10 name ("automobile") beside its bar; automargin alone clips it


def bar_colors(indices: list[int], true_label: int | None) -> list[str]:
    """Colours of the bars, bottom to top (the last is the top guess)."""
    if true_label is None:
        return [GREY] * (len(indices) - 1) + [BLUE]
    colors = [GREEN if i == true_label else GREY for i in indices]
    if indices[-1] != true_label:
        colors[-1] = RED
    return colors


def top5_figure(probs: torch.Tensor, true_label: int | None, classes: tuple[str, ...] = CLASSES,
                height: int = 210) -> go.Figure:
    """The top five (fewer for a model of fewer classes) of `classes`, the model's class names."""
    rows = top_k(probs, 5, classes)[::-1]
    fig = go.Figure(go.Bar(
        x=[100 * r["prob"] for r in rows], y=[r["label"] for r in rows], orientation="h",
        marker_color=bar_colors([r["index"] for r in rows], true_label),
        text=[f"{100 * r['prob']:.1f}%" for r in rows], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.2f}%<extra></extra>"))
    longest = max(len(r["label"]) for r in rows)
    style(fig, height, legend=None, margin=dict(l=max(LABEL_PX, min(300, 9 * longest)), r=48, t=4, b=4))
    fig.update_layout(xaxis=dict(range=[0, 100], visible=False, fixedrange=True),
                      yaxis=dict(fixedrange=True, tickfont=dict(size=14), automargin=True, ticksuffix=" "),
                      plot_bgcolor="rgba(0,0,0,0)", paper_bgcolor="rgba(0,0,0,0)")
    return fig
