"""The one look every chart shares: colours, font sizes, margins, legend placement and the chart toolbar.

A figure is built by its topic module and finished here, so a change of look is made once for every page.
"""
from __future__ import annotations

import plotly.graph_objects as go

# One colour per model or run, in the order they are listed (Plotly's default order, colour-blind friendlier
# than a random pick); the named colours say what a mark means wherever it appears.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
BLUE, RED, GREEN, GREY, INK = "#1f77b4", "#d62728", "#2ca02c", "#b8bfcc", "#1f2430"
FONT_SIZE, TITLE_SIZE = 13, 15
CONFIG = {"displayModeBar": False}  # no toolbar over the charts on a classroom screen
LEGENDS = {
    "top": dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
    "right": dict(orientation="v", yanchor="top", y=1.0, xanchor="left", x=1.02),
}


def style(fig: go.Figure, height: int, title: str | None = None, xaxis: str | None = None, yaxis: str | None = None,
          legend: str | None = "top", margin: dict | None = None) -> go.Figure:
    """Finish a figure in the app's look: the title top left, the legend above (or at the right, or none), the
    zoom kept while a live chart refreshes."""
    top = 45 if title else 10
    fig.update_layout(
        template="plotly_white", colorway=PALETTE, font=dict(size=FONT_SIZE), height=height,
        title=dict(text=title, x=0.01, font=dict(size=TITLE_SIZE)) if title else None,
        margin={**dict(l=55, r=15, t=top, b=45), **(margin or {})},
        legend=LEGENDS.get(legend or "top"), uirevision="keep")  # keep zoom while the chart refreshes
    if legend is None:
        fig.update_layout(showlegend=False)
    if xaxis is not None:
        fig.update_xaxes(title_text=xaxis)
    if yaxis is not None:
        fig.update_yaxes(title_text=yaxis)
    return fig
