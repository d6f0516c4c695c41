"""Pictures of the inside of a network: feature-map mosaics, F(x) beside x, knockout bars, and Fig. 7.

Maps are drawn as images (numpy -> RGB through a Plotly colour scale sampled once), not as Plotly heatmaps: a
page of 64-channel mosaics must draw in well under a second, and st.image of a small PNG does.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import plotly.graph_objects as go

from resnet_demo.data.images import upscale

from .style import BLUE, GREY, INK, PALETTE, RED, style

BACKGROUND = 245  # the grey between tiles of a mosaic
PLAIN_DASH = "dash"
DEPTH_COLORS = {20: PALETTE[0], 32: PALETTE[7], 44: PALETTE[3], 56: PALETTE[1], 110: PALETTE[2]}


@lru_cache(maxsize=4)
def _lut(scale: str) -> np.ndarray:
    """(256, 3) uint8: a Plotly colour scale sampled once."""
    import plotly.colors as pc

    colors = pc.sample_colorscale(pc.get_colorscale(scale), list(np.linspace(0, 1, 256)))
    return np.array([pc.unlabel_rgb(c) for c in colors], dtype=np.float64).round().astype(np.uint8)


def sequential(a: np.ndarray, size: int | None = None) -> np.ndarray:
    """(H, W) in 0..1 (NaN: background) -> RGB uint8, optionally enlarged to about `size` pixels."""
    rgb = _lut("Viridis")[np.clip(np.nan_to_num(a) * 255 + 0.5, 0, 255).astype(np.intp)]
    rgb[np.isnan(a)] = BACKGROUND
    return upscale(rgb, size) if size else rgb


def diverging(a: np.ndarray, scale: float, size: int | None = None) -> np.ndarray:
    """(H, W) of signed values -> RGB: -scale blue, 0 white, +scale red, so maps on one scale compare."""
    t = 0.5 + 0.5 * np.asarray(a, np.float64) / (scale if scale > 0 else 1.0)
    rgb = _lut("RdBu_r")[np.clip(t * 255 + 0.5, 0, 255).astype(np.intp)]
    return upscale(rgb, size) if size else rgb


def colorbar(scale: str = "Viridis", width: int = 256) -> np.ndarray:
    return np.repeat(_lut(scale)[np.linspace(0, 255, width).astype(np.intp)][None], 10, axis=0)


def _layout(fig: go.Figure, title: str, xaxis: str, yaxis: str, height: int) -> go.Figure:
    fig = style(fig, height, title, xaxis, yaxis)
    fig.update_layout(hovermode="closest")
    return fig


def block_rms_figure(labels: list[str], residual: list[float], shortcut: list[float | None], total: list[float],
                     selected: str | None = None, height: int = 320) -> go.Figure:
    """RMS of F(x), of the shortcut x and of their sum, block by block, for one image."""
    fig = go.Figure()
    if any(s is not None for s in shortcut):
        fig.add_bar(x=labels, y=shortcut, name="shortcut x", marker_color=GREY,
                    hovertemplate="block %{x}: RMS of x %{y:.3f}<extra></extra>")
    fig.add_bar(x=labels, y=residual, name="F(x)" if any(s is not None for s in shortcut) else "block output F(x)",
                marker_color=RED, hovertemplate="block %{x}: RMS of F(x) %{y:.3f}<extra></extra>")
    fig.add_scatter(x=labels, y=total, name="F(x) + x", mode="lines+markers", line=dict(color=BLUE, width=1.5),
                    marker=dict(size=4), hovertemplate="block %{x}: RMS of the sum %{y:.3f}<extra></extra>")
    if selected in labels:
        fig.add_vline(x=labels.index(selected), line=dict(color=INK, width=1, dash="dot"))
    fig = _layout(fig, "Size of each block's parts on this image (RMS over all channels)", "block (stage.block)",
                  "RMS", height)
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_xaxes(type="category")
    return fig


def knockout_figure(rows: list[dict], intact: float, selected: str | None = None, title: str = "",
                    height: int = 360) -> go.Figure:
    """Accuracy left after removing each block (bars; blocks that change shape hatched), the intact one dashed.

    One marker per bar sits on top of an invisible scatter so a click selects the block (Plotly selects scatter
    points, not bars).
    """
    labels = [r["block"] for r in rows]
    acc = [100 * r["accuracy"] for r in rows]
    colors = [RED if r["block"] == selected else BLUE for r in rows]
    fig = go.Figure()
    fig.add_bar(x=labels, y=acc, marker_color=colors,
                marker_pattern_shape=["/" if r["downsamples"] else "" for r in rows],
                customdata=[[r["replacement"], 100 * r.get("changed", float("nan"))] for r in rows],
                hovertemplate="without block %{x}: %{y:.2f}%<br>replaced by: %{customdata[0]}"
                              "<br>predictions changed: %{customdata[1]:.1f}%<extra></extra>", showlegend=False)
    fig.add_scatter(x=labels, y=acc, mode="markers", marker=dict(size=14, opacity=0), showlegend=False,
                    hoverinfo="skip", selected=dict(marker=dict(opacity=0)), unselected=dict(marker=dict(opacity=0)))
    fig.add_hline(y=100 * intact, line=dict(color=INK, dash="dash", width=1.2),
                  annotation_text=f"intact {100 * intact:.2f}%", annotation_position="bottom right")
    fig.add_hline(y=10, line=dict(color=GREY, dash="dot", width=1), annotation_text="chance (10%)",
                  annotation_position="top left")
    fig = _layout(fig, title, "removed block (stage.block; hatched: changes the map size)", "test accuracy (%)", height)
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 100])
    fig.update_layout(clickmode="event+select", dragmode=False, uirevision=None)
    return fig


def block_from_selection(points: list[dict], labels: list[str]) -> str | None:
    """The block label a click on knockout_figure selected, from a Streamlit plotly selection's points."""
    for pt in points or ():
        if pt.get("x") in labels:
            return pt["x"]
    return None


def fig7_figure(series: list[dict], ordered: bool, height: int = 360) -> go.Figure:
    """The paper's Fig. 7: std of each 3x3 layer's response; in layer order, or sorted by magnitude (descending).

    series: [{"label", "depth", "plain", "std"}]; plain nets dashed, ResNets solid, one colour per depth.
    """
    fig = go.Figure()
    for s in series:
        y = list(s["std"]) if not ordered else sorted(s["std"], reverse=True)
        x = list(range(1, len(y) + 1))
        fig.add_scatter(x=x, y=y, mode="lines", name=s["label"],
                        line=dict(color=DEPTH_COLORS.get(s["depth"], GREY), width=1.8,
                                  dash=PLAIN_DASH if s["plain"] else "solid"),
                        hovertemplate=s["label"] + ": layer %{x}, std %{y:.3f}<extra></extra>")
    fig = _layout(fig, "sorted by magnitude" if ordered else "in layer order",
                  "layer index (sorted by magnitude)" if ordered else "layer index (original)", "std", height)
    fig.update_yaxes(rangemode="tozero")
    return fig
