"""Plotly figures for the Test-set page: per-class accuracy bars and a clickable confusion matrix.

The confusion matrix is drawn as two heatmaps (correct cells in green, mistakes in red, so the rare mistakes
are not washed out by the large diagonal) plus an invisible scatter of one marker per cell: Plotly's
click-to-select works on scatter points but not on heatmap cells, so the markers are what a click selects.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from resnet_demo.nets.paper import CLASSES

from .style import INK, PALETTE, style


def per_class_bars(series: dict[str, list[float | None]], height: int = 360) -> go.Figure:
    """Grouped bars of per-class test accuracy (%), one group per class, one bar per model."""
    fig = go.Figure()
    for i, (name, accs) in enumerate(series.items()):
        ys = [None if a is None else 100 * a for a in accs]
        fig.add_bar(x=list(CLASSES), y=ys, name=name, marker_color=PALETTE[i % len(PALETTE)],
                    text=[f"{y:.0f}" if y is not None else "" for y in ys], textposition="outside", cliponaxis=False,
                    hovertemplate="%{x}: %{y:.1f}%<extra>" + name + "</extra>")
    # From 0 %: a bar's length is the accuracy, so a class at 80 % does not look half as good as one at 90 %.
    fig = style(fig, height, yaxis="test accuracy (%)", legend="top" if len(series) > 1 else None,
                margin=dict(l=10, r=10, t=30, b=10))
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 104]), uniformtext=dict(minsize=8, mode="hide"))
    return fig


def confusion_figure(confusion: list[list[int]] | np.ndarray, selected: tuple[int, int] | None = None,
                     height: int = 470, classes: tuple[str, ...] = CLASSES, clickable: bool = True) -> go.Figure:
    """Rows: true class, columns: predicted class (of `classes`, CIFAR-10's by default). Cell text is the image
    count; colour is % of the true class. `clickable`: the hover text invites a click (the page acts on one)."""
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.shape != (len(classes), len(classes)):
        raise ValueError(f"a {counts.shape} confusion matrix for {len(classes)} classes")
    totals = counts.sum(1, keepdims=True)
    pct = np.divide(100.0 * counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    eye = np.eye(len(classes), dtype=bool)
    names = list(classes)
    custom = np.dstack([counts, pct])
    fig = go.Figure()
    for mask, scale, zmax in ((eye, "Greens", 100.0), (~eye, "Reds", max(5.0, float(pct[~eye].max(initial=0))))):
        shown = mask & ((counts > 0) | eye)  # empty mistake cells stay blank, so the real ones stand out
        z = np.where(shown, pct, np.nan)
        fig.add_heatmap(z=z, x=names, y=names, colorscale=scale, zmin=0, zmax=zmax, showscale=False,
                        text=np.where(shown, counts.astype(str), ""), texttemplate="%{text}",
                        textfont=dict(size=12), hoverinfo="skip", xgap=1, ygap=1)
    xs, ys = np.meshgrid(np.arange(len(names)), np.arange(len(names)))
    fig.add_scatter(  # the click targets: one invisible square per cell
        x=[names[i] for i in xs.ravel()], y=[names[j] for j in ys.ravel()], mode="markers",
        marker=dict(symbol="square", size=max(36, 360 // len(names)), opacity=0), customdata=custom.reshape(-1, 2),
        hovertemplate="true <b>%{y}</b>, predicted <b>%{x}</b><br>%{customdata[0]} images "
                      "(%{customdata[1]:.1f}% of the true %{y})<extra>" + ("click to show them" if clickable else "")
                      + "</extra>",
        selected=dict(marker=dict(opacity=0)), unselected=dict(marker=dict(opacity=0)), showlegend=False)
    if selected is not None:
        t, p = selected
        fig.add_shape(type="rect", x0=p - 0.5, x1=p + 0.5, y0=t - 0.5, y1=t + 0.5,
                      line=dict(color=INK, width=3))
    style(fig, height, legend=None, margin=dict(l=10, r=10, t=10, b=10))
    fig.update_layout(plot_bgcolor="#f7f8fa", uirevision=None,
                      xaxis=dict(title="predicted class", tickangle=-35, range=[-0.5, len(names) - 0.5],
                                 type="category", constrain="domain", showgrid=False, zeroline=False, fixedrange=True),
                      yaxis=dict(title="true class", range=[len(names) - 0.5, -0.5], scaleanchor="x", type="category",
                                 constrain="domain", showgrid=False, zeroline=False, fixedrange=True))
    return fig


def cell_from_selection(points: list[dict]) -> tuple[int, int] | None:
    """(true, predicted) class indices of the clicked cell, from a Streamlit plotly selection's points."""
    for pt in points or ():
        x, y = pt.get("x"), pt.get("y")
        if x in CLASSES and y in CLASSES:
            return CLASSES.index(y), CLASSES.index(x)
    return None
