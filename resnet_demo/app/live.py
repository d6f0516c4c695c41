"""The training job as every tab sees it: one shared reader of the runs folder, and the live charts drawn once.

Each tab's Train page refreshes every second. The reading (watch.Poller) and the three Plotly figures, which took
most of a refresh's time (about 50 ms each on a 2-core CPU, BENCHMARKS.md "Tabs watching a job"), are made
once per server for each new state of the job and shared by every session; a tab then only sends them.
"""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from resnet_demo.server import jobs
from resnet_demo.server.watch import Poller
from resnet_demo.store.events import epochs as epoch_rows

from .charts import curves as charts

REFRESH_S = 1.0  # how often the shared reader looks at the runs folder, at most


@st.cache_resource(max_entries=4, show_spinner=False)
def _poller(runs: str) -> Poller:
    return Poller(runs, REFRESH_S)


def poller() -> Poller:
    """The server's one reader of its runs folder (RESNET_DEMO_RUNS, else ./runs)."""
    return _poller(str(jobs.runs_path()))


@st.cache_resource(max_entries=8, show_spinner=False)
def _figures(run_id: str, n_events: int, _events: list) -> tuple[go.Figure, go.Figure | None, go.Figure]:
    lr = charts.lr_figure(_events)
    lr.update_layout(height=220)
    return charts.loss_figure(_events), charts.accuracy_figure(_events) if epoch_rows(_events) else None, lr


def figures(run: jobs.RunStatus) -> tuple[go.Figure, go.Figure | None, go.Figure]:
    """(loss, accuracy or None before the first epoch, learning rate) of a run, built once for each new record.
    Shared between sessions: draw them, never change them."""
    return _figures(run.run_id, len(run.events), run.events)
