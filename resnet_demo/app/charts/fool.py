"""The Fool-it page's figures: accuracy under attack by depth (the shipped table), the smallest ε that fools each
model, and where an attacked image lands among the test images in the network's last features."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from resnet_demo.nets.paper import CLASSES

from .inside import DEPTH_COLORS, PLAIN_DASH
from .style import BLUE, GREY, INK, PALETTE, RED, style

ATTACK_TITLES = {"fgsm": "FGSM (one step)", "pgd": "PGD"}


def _color(depth: int | None, i: int) -> str:
    return DEPTH_COLORS.get(depth, PALETTE[i % len(PALETTE)])


def robustness_figure(series: list[dict], height: int = 380) -> go.Figure:
    """Accuracy (%) against ε, one line a model, FGSM left and PGD right; plain nets dashed. Each series is one of
    robustness.table_series, with "depth" and "plain" added."""
    attacks = [a for a in ATTACK_TITLES if any(s["attack"] == a for s in series)]
    titles = []
    for a in attacks:
        first = next(s for s in series if s["attack"] == a)
        steps = f", {first['steps']} steps" if a == "pgd" and first.get("steps") else ""
        titles.append(f"{ATTACK_TITLES[a]}{steps} · first {first['images']:,} test images")
    fig = make_subplots(rows=1, cols=max(1, len(attacks)), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=titles)
    order = sorted({s["model"] for s in series}, key=lambda m: next(
        (bool(s.get("plain")), s.get("depth") or 0) for s in series if s["model"] == m))
    for col, attack in enumerate(attacks, start=1):
        for i, model in enumerate(order):
            s = next((s for s in series if s["model"] == model and s["attack"] == attack), None)
            if s is None:
                continue
            fig.add_scatter(x=s["eps"], y=[100 * a for a in s["accuracy"]], mode="lines+markers", name=s["label"],
                            legendgroup=model, showlegend=col == 1, row=1, col=col,
                            line=dict(color=_color(s.get("depth"), i), dash=PLAIN_DASH if s.get("plain") else None),
                            hovertemplate=f"{s['label']}<br>ε = %{{x}}/255: %{{y:.1f}}%<extra></extra>")
    style(fig, height, legend="right", margin=dict(t=40))
    fig.update_xaxes(title_text="ε (units of 1/255)", tickvals=[0, 1, 2, 4, 8, 16], fixedrange=True)
    fig.update_yaxes(range=[0, 100], fixedrange=True, ticksuffix="%")
    fig.update_yaxes(title_text="test accuracy under attack", row=1, col=1)
    fig.update_annotations(font=dict(size=13))
    return fig


def smallest_eps_figure(rows: list[tuple[str, int | None]], eps_max: int, height: int | None = None) -> go.Figure:
    """One bar a model: the smallest ε that fooled it on this image; a grey bar past eps_max for "not even then"."""
    labels = [label for label, _ in rows][::-1]
    values = [eps if eps is not None else eps_max + 1 for _, eps in rows][::-1]
    colors = [RED if eps is not None else GREY for _, eps in rows][::-1]
    text = [f"{eps}/255" if eps is not None else f"not fooled up to {eps_max}/255" for _, eps in rows][::-1]
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=colors, text=text,
                           textposition="outside", cliponaxis=False, hoverinfo="skip"))
    style(fig, height or 70 + 42 * len(rows), legend=None, margin=dict(l=10, r=150, t=10, b=40))
    fig.update_xaxes(title_text="smallest ε that fools it (units of 1/255)", range=[0, eps_max + 1.5],
                     fixedrange=True, dtick=2)
    fig.update_yaxes(fixedrange=True, automargin=True, ticksuffix=" ")
    return fig


def landing_figure(cloud: np.ndarray, labels: np.ndarray, a: int, b: int, before: np.ndarray, after: np.ndarray,
                   height: int = 430) -> go.Figure:
    """Test images of classes a and b by their scores (logits) for a (x) and b (y): the last features projected
    onto the classifier's two directions. Above the diagonal the net prefers b. The image before and after the
    attack are the two stars, joined by an arrow."""
    fig = go.Figure()
    for cls, color in ((a, BLUE), (b, RED)):
        pick = labels == cls
        fig.add_scatter(x=cloud[pick, a], y=cloud[pick, b], mode="markers", name=f"test images of {CLASSES[cls]}",
                        marker=dict(color=color, size=6, opacity=0.45),
                        hovertemplate=f"a {CLASSES[cls]}<br>{CLASSES[a]}: %{{x:.1f}}<br>{CLASSES[b]}: %{{y:.1f}}"
                                      "<extra></extra>")
    pts = np.concatenate([cloud[np.isin(labels, (a, b))][:, [a, b]], [before[[a, b]], after[[a, b]]]])
    lo, hi = float(pts.min()) - 1, float(pts.max()) + 1
    fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color=INK, dash="dot", width=1),
                    name="equal scores", hoverinfo="skip")
    for point, name, symbol in ((before, "this image", "star"), (after, "after the attack", "x")):
        fig.add_scatter(x=[point[a]], y=[point[b]], mode="markers", name=name,
                        marker=dict(symbol=symbol, size=16, color=INK, line=dict(color="white", width=1)),
                        hovertemplate=f"{name}<br>{CLASSES[a]}: %{{x:.1f}}<br>{CLASSES[b]}: %{{y:.1f}}<extra></extra>")
    fig.add_annotation(x=after[a], y=after[b], ax=before[a], ay=before[b], xref="x", yref="y", axref="x", ayref="y",
                       showarrow=True, arrowhead=3, arrowwidth=2, arrowcolor=INK, text="")
    style(fig, height, xaxis=f"score for {CLASSES[a]}", yaxis=f"score for {CLASSES[b]}", legend="right")
    fig.update_xaxes(range=[lo, hi], zeroline=False)
    fig.update_yaxes(range=[lo, hi], zeroline=False, scaleanchor="x", scaleratio=1)
    return fig
