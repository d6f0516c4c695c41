"""Predict page: bring images (test set, upload, camera), see the 32x32 the network sees and its top-5 guesses,
optionally from several models side by side."""
from __future__ import annotations

import streamlit as st
import torch

from resnet_demo.data.images import upscale
from resnet_demo.nets.inference import probabilities, top_k
from resnet_demo.store.registry import ModelEntry, classes_label, model_label

from .. import downloads, inputs, pickers, state
from ..charts.predictions import top5_figure
from ..charts.style import CONFIG
from ..plain import plain

SEEN_PX = 256  # the 32x32 input drawn 8x, nearest neighbour: every pixel the network gets is visible
PER_ROW = 2  # top-5 charts side by side below the image when they do not fit beside it
ONE_OF_TEN = ("The network must answer with one of the classes it knows, whatever the picture shows: a rocket or "
              "a tissue still gets one of them, often with high confidence.")


def _verdict(probs: torch.Tensor, true_label: int | None, classes: tuple[str, ...]) -> str:
    best = top_k(probs, 1, classes)[0]
    text = f"**{best['label']}** · {100 * best['prob']:.1f}%"
    if true_label is None:
        return text
    return text + (" :green[:material/check_circle: right]" if best["index"] == true_label
                   else " :red[:material/cancel: wrong]")


def _explain_button(chosen: inputs.Chosen, entry: ModelEntry, i: int) -> None:
    if st.button("Explain this prediction", key=f"explain_{i}_{chosen.key}", icon=":material/visibility:"):
        inputs.set_current(chosen)
        st.session_state["explain_source"] = inputs.KEEP
        st.switch_page(st.Page(_explain_page_stub, url_path="explain"), query_params={"model": entry.name})


def _explain_page_stub() -> None:
    """Only its url_path matters: st.switch_page resolves a callable page by url_path ("explain")."""


def _chart_columns(n: int) -> list:
    """Columns for n top-5 charts in rows of their own, at most PER_ROW a row: a narrower chart clips its class
    names ("automobile") or its percentages."""
    return [c for _ in range(-(-n // PER_ROW)) for c in st.columns(PER_ROW, gap="medium")][:n]


def _card(i: int, chosen: inputs.Chosen, results: list[tuple[ModelEntry, torch.Tensor]]) -> None:
    with st.container(border=True):
        title = plain(chosen.name) + (f" · true class: **{chosen.label_name}**" if chosen.label is not None else "")
        st.markdown(f"##### {title}")
        single = len(results) == 1
        is_test = chosen.label is not None  # a test image is already 32x32: the original is what the network sees
        image_widths = [1] if is_test else [1.2, 1]
        chart_width = 2.2 if single else 1.5
        one_row = len(image_widths) + len(results) <= 3  # else the charts get a row of their own
        cols = st.columns(image_widths + ([chart_width] * len(results) if one_row else []), gap="medium")
        if not is_test:
            w, h = chosen.size
            cols[0].image(chosen.original, caption=f"Original, {w}x{h} pixels", width="stretch")
        cols[len(image_widths) - 1].image(
            upscale(chosen.small, SEEN_PX), width="stretch",
            caption="The 32x32 test image" if is_test else "What the network sees: 32x32")
        chart_cols = cols[len(image_widths):] if one_row else _chart_columns(len(results))
        for col, (entry, probs) in zip(chart_cols, results, strict=False):
            true_label = chosen.label_in(entry.classes)
            with col:
                if not single:
                    st.markdown(f"**{entry.label}**")
                st.markdown(_verdict(probs, true_label, entry.classes))
                st.plotly_chart(top5_figure(probs, true_label, entry.classes), config=CONFIG,
                                key=f"top5_{i}_{chosen.key}_{entry.name}", width="stretch")
        if not is_test or any(chosen.label_in(e.classes) is None for e, _ in results):  # a photo may be anything
            st.caption(ONE_OF_TEN)
        _explain_button(chosen, results[0][0], i)


def render() -> None:
    st.title("Predict")
    caption = st.empty()
    head = st.columns([1, 1.4])
    entry = pickers.model_picker(container=head[0])
    if entry is None:
        return
    knows = ("ten classes" if entry.is_cifar10 else
             f"the {len(entry.classes)} classes it was taught ({classes_label(entry.classes, 60)})")
    caption.caption(f"What does a {'CIFAR-10 ' if entry.is_cifar10 else ''}ResNet think your picture shows? It "
                    f"only ever sees 32x32 pixels and knows {knows}.")
    downloads.export_buttons(entry, head[0])
    others = [e for e in state.models() if e.name != entry.name]
    compare: list[str] = []
    if others:
        by_name = {e.name: e for e in others}
        if "predict_compare" in st.session_state:  # drop models that vanished or became the main choice
            st.session_state["predict_compare"] = [n for n in st.session_state["predict_compare"] if n in by_name]
        compare = head[1].multiselect("Compare with", list(by_name), key="predict_compare",
                                      format_func=lambda n: model_label(by_name[n]), max_selections=3,
                                      placeholder="other models, side by side")
    entries = [entry] + [e for e in others if e.name in compare]

    left, right = st.columns([1.3, 2.3], gap="large")
    with left:
        st.subheader("Image")
        chosen = inputs.pick("predict", multiple=True)
    with right:
        if not chosen:
            st.info("Pick a test image, upload your own photos, or take one with the camera.",
                    icon=":material/arrow_back:")
            return
        batch = torch.cat([c.x for c in chosen])
        results = []
        for e in entries:
            probs = probabilities(state.load(e), batch)
            results.append((e, probs))
        inputs.set_current(chosen[0])
        for i, c in enumerate(chosen):
            _card(i, c, [(e, p[i]) for e, p in results])
