"""Inside page: what a trained network makes of one image, stage by stage and block by block, and how much
accuracy is left when one block is removed.

Three views, kept in the URL (?view=maps|blocks|knockout) so a teacher can share one. The image comes from
the same picker as Predict and Explain (the image last looked at is offered first).
"""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from resnet_demo.data.images import upscale
from resnet_demo.interpret import anatomy, knockout
from resnet_demo.store.registry import ModelEntry

from .. import inputs, inside_data, pickers, state
from ..charts.inside import block_from_selection, block_rms_figure, colorbar, diverging, knockout_figure, sequential
from ..charts.style import CONFIG

VIEWS = {"maps": "Feature maps", "blocks": "F(x) + x, block by block", "knockout": "Block knockout"}
SIZE = 288  # pixels a map is drawn at (nearest neighbour, so every activation stays a visible square)
LIVE_IMAGES = 500  # a knockout click runs on this many test images: about a second a block for ResNet-56 on 2 cores
_DISSECTED = "inside.dissected"  # session cache: (model, image) -> Anatomy (a ResNet-110 one is ~14 MB)
_KNOCKED_IMAGE = "inside.knocked_image"  # session cache: (model, image, block) -> probabilities with/without it


def _view_picker(container) -> str:
    if st.session_state.get("inside_view") not in VIEWS:
        wanted = state.query_param("view")
        st.session_state["inside_view"] = wanted if wanted in VIEWS else "maps"
    view = container.segmented_control("View", list(VIEWS), key="inside_view", format_func=VIEWS.get,
                                       selection_mode="single") or "maps"
    state.set_query_param("view", view)
    return view


def _dissect(entry: ModelEntry, chosen: inputs.Chosen) -> anatomy.Anatomy:
    cache: dict = st.session_state.setdefault(_DISSECTED, {})
    key = (*inside_data.model_key(entry), chosen.key)
    if key not in cache:
        cache[key] = anatomy.dissect(state.load(entry), chosen.x)
        while len(cache) > 4:
            cache.pop(next(iter(cache)))
    return cache[key]


def _clamped_slider(label: str, top: int, key: str, **kw) -> int:
    """A 0..top slider whose remembered value is pulled back into range when `top` shrinks (another block)."""
    if st.session_state.get(key, 0) > top:
        st.session_state[key] = top
    return st.slider(label, 0, top, key=key, **kw)


def _verdict(a: anatomy.Anatomy, chosen: inputs.Chosen, entry: ModelEntry) -> None:
    probs = np.exp(a.logits - a.logits.max())
    probs /= probs.sum()
    best, true = int(probs.argmax()), chosen.label_in(entry.classes)
    right = "" if true is None else (" :green[right]" if best == true else f" :red[wrong: it is a {chosen.label_name}]")
    st.markdown(f"{entry.label} says **{entry.classes[best]}** ({100 * probs[best]:.1f}%){right}")


# --- feature maps ------------------------------------------------------------------------------------------

def _maps(a: anatomy.Anatomy, chosen: inputs.Chosen) -> None:
    st.markdown("Each small square is one channel's map: what one filter found where. Early channels respond to "
                "colours and edges at full resolution; later ones to larger, more abstract parts, on coarser maps.")
    cols = st.columns(4, gap="small")
    cols[0].image(upscale(chosen.small, SIZE), width="stretch", caption="Input, 32×32")
    for col, (i, m) in zip(cols[1:], enumerate(a.stages, start=1), strict=False):
        c, h, w = m.shape
        col.image(sequential(anatomy.tile(m), SIZE), width="stretch",
                  caption=f"Stage {i}: {c} channels of {h}×{w}")
    st.image(colorbar(), width=SIZE, caption="each channel on its own scale: its lowest value → its highest")
    st.subheader("One channel")
    left, right = st.columns([1, 1.4], gap="large")
    with left:
        stage = st.radio("Stage", [1, 2, 3], horizontal=True, key="inside_stage",
                         format_func=lambda s: f"{s}: {a.stages[s - 1].shape[0]} ch, {a.stages[s - 1].shape[1]}×"
                                               f"{a.stages[s - 1].shape[2]}")
        maps = a.stages[stage - 1]
        channel = _clamped_slider("Channel", maps.shape[0] - 1, "inside_channel")
        strongest = np.argsort(-maps.reshape(len(maps), -1).mean(1))[:5]
        st.caption(f"Most active channels of stage {stage} on this image: {', '.join(map(str, strongest))}. "
                   f"Channels that stay at 0 were switched off by the ReLU here.")
    m = maps[channel]
    lo, hi = float(m.min()), float(m.max())
    scaled = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    right.image(sequential(scaled, SIZE), width=SIZE,
                caption=f"Stage {stage}, channel {channel}: values {lo:.2f} … {hi:.2f} (after the ReLU), "
                        f"mean {float(m.mean()):.2f}")


# --- F(x) + x ----------------------------------------------------------------------------------------------

def _blocks(a: anatomy.Anatomy) -> None:
    labels = [p.info.label for p in a.parts]
    plain = a.parts[0].shortcut is None
    if st.session_state.get("inside_block") not in labels:
        st.session_state["inside_block"] = labels[len(labels) // 2]
    left, right = st.columns([1, 1], gap="large")
    label = left.select_slider("Block (stage.block)", labels, key="inside_block")
    part = a.parts[labels.index(label)]
    with right:
        channel = _clamped_slider("Channel", part.residual.shape[0] - 1, "inside_block_channel")
    pieces = [("F(x): the residual branch" if not plain else "F(x): the whole block", part.residual)]
    if not plain:
        pieces.append(("x: the shortcut" + (" (subsampled, zero-padded)" if part.info.downsamples else ""),
                       part.shortcut))
        pieces.append(("F(x) + x", part.total))
    pieces.append(("output: ReLU(F(x) + x)" if not plain else "output: ReLU(F(x))", part.output))
    scale = max(float(np.abs(p[channel]).max()) for _, p in pieces)
    cols = st.columns(4, gap="small")
    for col, (name, maps) in zip(cols, pieces, strict=False):
        col.image(diverging(maps[channel], scale, SIZE // 2), width="stretch",
                  caption=f"{name} · RMS {anatomy.BlockParts.rms(maps, channel):.3f}")
    st.image(colorbar("RdBu_r"), width=SIZE, caption=f"one scale for all: −{scale:.2f} (blue) … 0 (white) … "
                                                     f"+{scale:.2f} (red)")
    f_rms = anatomy.BlockParts.rms(part.residual)
    if plain:
        st.markdown(f"A plain block has no shortcut: its two layers must produce the whole output themselves "
                    f"(RMS {f_rms:.3f} over all {part.residual.shape[0]} channels of block {label}).")
    else:
        x_rms = anatomy.BlockParts.rms(part.shortcut)
        st.markdown(f"Over all {part.residual.shape[0]} channels of block {label}: RMS of F(x) **{f_rms:.3f}**, "
                    f"of x **{x_rms:.3f}**, ratio **{f_rms / x_rms:.2f}**" if x_rms else
                    f"Over all channels of block {label}: RMS of F(x) **{f_rms:.3f}**; x is all zeros here.")
    st.plotly_chart(block_rms_figure(labels, [anatomy.BlockParts.rms(p.residual) for p in a.parts],
                                     [anatomy.BlockParts.rms(p.shortcut) for p in a.parts],
                                     [anatomy.BlockParts.rms(p.total) for p in a.parts], selected=label),
                    key="inside_rms", config=CONFIG)
    st.caption("He et al. argue that where the identity is nearly right, a residual block only has to learn a "
               "small correction F(x) on top of x (their Fig. 7 measures it over the test set; see the Paper "
               "page). The red bars against the grey ones show how large the correction is on this image, block by "
               "block."
               if not plain else "Switch to a ResNet to see F(x) beside the shortcut x.")


# --- knockout ----------------------------------------------------------------------------------------------

def _table() -> dict:
    """The shipped full-test-set knockout table ({} when there is none)."""
    try:
        return knockout.read_table() or {}
    except ValueError as e:
        st.warning(f"The shipped knockout table could not be read: {e}")
        return {}


def _shipped_record(table: dict, entry: ModelEntry) -> dict | None:
    """This model's record in the table, when it was measured on these very weights."""
    rec = table.get("models", {}).get(entry.name)
    if rec is None or (entry.sha256 and rec.get("weights_sha256") != entry.sha256):
        return None
    return rec


def _how_measured(rec: dict) -> str:
    minutes = rec.get("wall_s", 0) / 60
    procs = rec.get("processes", 1)
    return (f"{rec['images']:,} images, {minutes:.0f} min in fp32 on {rec.get('hardware', 'a CPU')}"
            + (f" × {procs} processes" if procs > 1 else "")
            + f", with `{rec.get('command', 'scripts/inside_tables.py')}`")


def _on_bar_click() -> None:
    event = st.session_state.get("inside_knockout_chart")
    labels = st.session_state.get("inside_knockout_labels", [])
    block = block_from_selection(event.selection.points if event is not None else [], labels)
    if block is not None:
        st.session_state["inside_knockout_block"] = block


def _live_row(entry: ModelEntry, images: inside_data.LiveImages, index: int) -> tuple[float, float, float]:
    """(intact accuracy, accuracy without the block, share of predictions changed) on the live images."""
    key = inside_data.model_key(entry)
    intact = inside_data.predictions(entry, key, images, images.key, None)
    without = inside_data.predictions(entry, key, images, images.key, index)
    return (float((intact == images.labels).mean()), float((without == images.labels).mean()),
            float((without != intact).mean()))


def _knockout(entry: ModelEntry) -> None:
    model = state.load(entry)
    infos = anatomy.block_infos(model)
    chain = anatomy.blocks(model)
    labels = [i.label for i in infos]
    st.session_state["inside_knockout_labels"] = labels
    if st.session_state.get("inside_knockout_block") not in labels:
        st.session_state["inside_knockout_block"] = labels[1] if len(labels) > 1 else labels[0]
    table = _table()
    rec = _shipped_record(table, entry)
    st.markdown("Remove one block and keep everything else. "
                + ("A residual block leaves its shortcut behind, so the signal still flows past the gap; "
                   if not entry.arch.plain else
                   "A plain block leaves the identity behind where its input and output have the same shape; ")
                + "where the block changes the map size (the first block of stages 2 and 3, hatched) the "
                  "parameter-free option-A map (subsample, zero-pad the new channels) takes its place.")
    selected = st.session_state["inside_knockout_block"]
    if rec is not None:
        st.plotly_chart(knockout_figure(rec["blocks"], rec["intact_accuracy"], selected,
                                        f"{entry.label} without one block, on all {rec['images']:,} test images"),
                        key="inside_knockout_chart", on_select=_on_bar_click, selection_mode="points",
                        config=CONFIG)
        rows = rec["blocks"]
        resid = [r for r in rows if not r["downsamples"]]
        median = 100 * float(np.median([r["accuracy"] for r in resid]))
        st.caption(f"Measured on the full CIFAR-10 test set ({_how_measured(rec)}). Without one of the {len(resid)} "
                   f"blocks that keep the map size: median {median:.1f}%, "
                   f"worst {100 * min(r['accuracy'] for r in resid):.1f}%. **Click a bar** to try that block live.")
    else:
        covered = [r.get("label", n) for n, r in table.get("models", {}).items()]
        st.info("No full-test-set knockout table is shipped for this model"
                + (f" (the shipped one covers {', '.join(covered)})" if covered else "")
                + ". Pick any block below to measure it live.")
    label = st.select_slider("Block to remove (stage.block)", labels, key="inside_knockout_block")
    index = labels.index(label)
    images = inside_data.live_images(LIVE_IMAGES)
    if images is None:
        st.info("No test images are available here to measure a knockout on (no `test_images.npz` beside the "
                "weights and no local test set).")
        return
    with st.spinner(f"Running {entry.label} without block {label} on {len(images):,} test images..."):
        intact, without, changed = _live_row(entry, images, index)
    cols = st.columns(3)
    cols[0].metric("Intact", f"{100 * intact:.1f}%", help="on the same images")
    cols[1].metric(f"Without block {label}", f"{100 * without:.1f}%", delta=f"{100 * (without - intact):+.1f} points",
                   delta_color="normal")
    cols[2].metric("Predictions changed", f"{100 * changed:.1f}%")
    st.caption(f"Live, on {images.description}. Block {label} is replaced by: {knockout.replacement(chain[index])}.")
    current = inputs.current()
    if current is not None:
        _current_image(entry, current, index, label)


def _current_image(entry: ModelEntry, chosen: inputs.Chosen, index: int, label: str) -> None:
    """The image last looked at, with and without the block: remembered, so a re-render runs nothing."""
    cache: dict = st.session_state.setdefault(_KNOCKED_IMAGE, {})
    key = (*inside_data.model_key(entry), chosen.key, index)
    if key not in cache:
        intact, knocked = knockout.knockout_logits(state.load(entry), chosen.x, [index])
        cache[key] = (torch.softmax(intact[0], 0), torch.softmax(knocked[index][0], 0))
        while len(cache) > 64:
            cache.pop(next(iter(cache)))
    p0, p1 = cache[key]
    c0, c1 = int(p0.argmax()), int(p1.argmax())
    cols = st.columns([1, 4], vertical_alignment="center")
    cols[0].image(upscale(chosen.small, 96), width=96)
    names = entry.classes
    cols[1].markdown(f"{chosen.name}: intact **{names[c0]}** ({100 * float(p0[c0]):.0f}%) → without block {label} "
                     f"**{names[c1]}** ({100 * float(p1[c1]):.0f}%)")


def render() -> None:
    entry, head = pickers.model_page_head(
        "Inside the network", "What the layers make of one picture, how small a residual block's correction F(x) "
                              "is next to its input x, and what is left when a block is taken out.",
        [1, 1.6], vertical_alignment="bottom")
    if entry is None:
        return
    view = _view_picker(head[1])
    if view == "knockout":
        if not entry.is_cifar10:  # its accuracy would be counted against CIFAR-10 labels it was never taught
            st.info(f"The knockout counts right answers on CIFAR-10's test images, and {entry.label} was taught "
                    f"other classes. Pick a CIFAR-10 model for it; the other two views work with any model.")
            return
        _knockout(entry)
        return
    left, right = st.columns([1.1, 2.6], gap="large")
    with left:
        st.subheader("Image")
        found = inputs.pick("inside", multiple=False, offer_current=True)
    chosen = found[0] if found else None
    if chosen is None:
        right.info("Pick a test image, upload a photo, or take one with the camera.", icon=":material/arrow_back:")
        return
    inputs.set_current(chosen)
    a = _dissect(entry, chosen)
    with right:
        _verdict(a, chosen, entry)
        if view == "maps":
            _maps(a, chosen)
        else:
            _blocks(a)
