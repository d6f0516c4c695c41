"""The paper's Fig. 7 on the Paper page: the std of every 3x3 layer's response, plain nets against ResNets.

The figures come from weights/fig7.json (measured on the full test set by scripts/inside_tables.py) for every
model whose weights it was measured on; any other (a retrained model, or no file at all) is measured here on
the shipped test images, once per server, and the caption says which is which.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from resnet_demo.interpret.anatomy import read_fig7
from resnet_demo.nets.model import Arch
from resnet_demo.store.registry import ModelEntry

from . import inside_data
from .charts.inside import fig7_figure
from .charts.style import CONFIG

NETS = ((True, 20), (True, 56), (False, 20), (False, 56), (False, 110))  # the paper's Fig. 7 (plus 110)
FALLBACK_IMAGES = 500


def models(shipped: list[ModelEntry]) -> list[ModelEntry]:
    """The best shipped plain-20, plain-56, ResNet-20, -56 and -110 (option A), those that are shipped."""
    out = []
    for plain, depth in NETS:
        found = [e for e in shipped if e.arch == Arch(depth, plain, "A") and e.weights is not None]
        if found:
            out.append(max(found, key=lambda e: e.test_accuracy or 0.0))
    return out


def _series(entries: list[ModelEntry]) -> tuple[list[dict], list[str]]:
    """([{"label", "depth", "plain", "std", "source"}], the labels measured live because no table covered them)."""
    try:
        table = read_fig7() or {}
    except ValueError as e:
        st.warning(f"The shipped Fig. 7 measurements could not be read ({e}); measuring on the shipped test images.")
        table = {}
    series, live = [], []
    images = None
    for e in entries:
        rec = table.get("models", {}).get(e.name)
        if rec is None or (e.sha256 and rec.get("weights_sha256") != e.sha256):
            images = images or inside_data.live_images(FALLBACK_IMAGES)
            if images is None:
                continue
            with st.spinner(f"Measuring {e.label}'s layer responses on {len(images):,} test images..."):
                rec = inside_data.response_std(e, inside_data.model_key(e), images, images.key)
            live.append(e.label)
        series.append({"label": e.label, "depth": e.arch.depth, "plain": e.arch.plain, "std": rec["std"]})
    return series, live


def _mean(series: list[dict], plain: bool, depth: int) -> float | None:
    found = [s for s in series if s["plain"] == plain and s["depth"] == depth]
    return float(np.mean(found[0]["std"])) if found else None


def _verdict(series: list[dict]) -> str:
    """Whether this project's models agree with the paper, from the measured means (pairs that are shipped)."""
    pairs = [(_mean(series, True, d), _mean(series, False, d)) for d in (20, 56)]
    pairs = [(p, r) for p, r in pairs if p is not None and r is not None]
    resnets = [m for m in (_mean(series, False, d) for d in (20, 56, 110)) if m is not None]
    if not pairs and len(resnets) < 2:
        return ""
    agree = all(r < p for p, r in pairs) and all(a > b for a, b in zip(resnets, resnets[1:]))
    return (" This project's models agree (mean std below the figures)." if agree else
            " This project's models do not all agree: see the mean std below the figures.")


def section(shipped: list[ModelEntry]) -> None:
    st.header("Fig. 7: residual functions are small")
    entries = models(shipped)
    if not entries:
        st.info("No plain net or ResNet of the paper's Fig. 7 depths is shipped, so there is nothing to measure.")
        return
    series, live = _series(entries)
    if not series:
        st.info("No measurements and no test images to measure on are shipped.")
        return
    st.markdown("The standard deviation of every 3×3 layer's response, after batch normalisation and before the "
                "addition and the ReLU. The paper's finding: **residual functions are generally closer to zero than "
                "their plain counterparts**, and the deeper ResNet has the smaller responses, so each block changes "
                "the signal only a little." + _verdict(series))
    a, b = st.columns(2)
    a.plotly_chart(fig7_figure(series, ordered=False), key="paper_fig7_order", config=CONFIG)
    b.plotly_chart(fig7_figure(series, ordered=True), key="paper_fig7_sorted", config=CONFIG)
    pairs = [(d, _mean(series, True, d), _mean(series, False, d)) for d in (20, 56)]
    measured = "; ".join(f"plain-{d} {p:.3f} vs ResNet-{d} {r:.3f}" for d, p, r in pairs if p and r)
    r110 = _mean(series, False, 110)
    table = [s["label"] for s in series if s["label"] not in live]
    st.caption("Dashed: plain nets; solid: ResNets. "
               + (f"Mean std over the layers here: {measured}" + (f"; ResNet-110 {r110:.3f}" if r110 else "") + ". "
                  if measured or r110 else "")
               + (f"{', '.join(table)}: measured on all 10,000 test images (`python scripts/inside_tables.py fig7`). "
                  if table else "")
               + (f"{', '.join(live)}: measured here on {FALLBACK_IMAGES:,} shipped test images. " if live else "")
               + "The std is taken over every value of a layer's response (images × channels × positions).")
