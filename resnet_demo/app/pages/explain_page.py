"""Explain page: a heatmap of which pixels pushed the network towards a class, by six Captum methods.

The method is kept in the URL (?method=ig) like the model. Attributions are remembered per session, so moving
the opacity slider redraws at once instead of recomputing Integrated Gradients.
"""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from resnet_demo.interpret import explain
from resnet_demo.interpret.explain import METHODS, Attribution
from resnet_demo.nets.inference import probabilities, top_k
from resnet_demo.store.registry import ModelEntry

from .. import inputs, pickers, state

SIZE = 256  # 32x32 drawn 8x
PREDICTED, TRUE = "predicted", "true"
ALL = "all"  # the method choice that draws every method side by side
_RESULTS = "explain.results"  # session cache: (model, image, method, target, options) -> Attribution


def _method_picker(container) -> str:
    keys = [*METHODS, ALL]
    if st.session_state.get("method") not in keys:
        wanted = state.query_param("method")
        st.session_state["method"] = wanted if wanted in keys else "gradcam"
    method = container.selectbox("Method", keys, key="method",
                                 format_func=lambda k: "All six, side by side" if k == ALL else METHODS[k].label)
    state.set_query_param("method", method)
    return method


def _target_picker(container, chosen: inputs.Chosen, probs: torch.Tensor, classes: tuple[str, ...]) -> int:
    """The class to explain, as an index into the model's `classes`."""
    best = top_k(probs, 1, classes)[0]
    true = chosen.label_in(classes)
    options = [PREDICTED] + ([TRUE] if true is not None else []) + list(classes)

    def label(o: str) -> str:
        if o == PREDICTED:
            return f"Predicted: {best['label']} ({100 * best['prob']:.0f}%)"
        if o == TRUE:
            return f"True class: {classes[true]} ({100 * float(probs[true]):.0f}%)"
        return f"{o} ({100 * float(probs[classes.index(o)]):.1f}%)"

    if st.session_state.get("explain_target") not in options:
        st.session_state["explain_target"] = PREDICTED
    choice = container.selectbox("Explain which class?", options, key="explain_target", format_func=label)
    return best["index"] if choice == PREDICTED else true if choice == TRUE else classes.index(choice)


def _options(method: str) -> dict:
    """The knobs of the chosen method(s), in the left column."""
    opts: dict = {}
    if method in ("ig", ALL):
        opts["n_steps"] = st.slider("Integrated Gradients: steps", 4, 128, 32, step=4, key="ig_steps",
                                    help="More steps approximate the path integral better and take longer.")
        opts["baseline"] = st.radio("Integrated Gradients: baseline", explain.BASELINES, horizontal=True,
                                    key="ig_baseline", format_func={"black": "Black image",
                                                                    "mean": "Average colour"}.get,
                                    help="The 'nothing here' image the path starts from. Pixels that already "
                                         "look like it get no credit.")
    if method in ("smoothgrad", ALL):
        opts["nt_samples"] = st.slider("SmoothGrad: noisy copies", 4, 64, 16, step=4, key="sg_samples")
        opts["noise"] = st.slider("SmoothGrad: noise (fraction of the pixel range)", 0.05, 0.5, 0.15, step=0.05,
                                  key="sg_noise")
    if method in ("occlusion", ALL):
        window = st.select_slider(
            "Occlusion: patch size (pixels)", [4, 8, 16], value=8, key="occ_window",
            format_func=lambda w: f"{w}x{w}, stride {w // 2}",
            help="Smaller patches give a finer map but many more forward passes (4x4: 225, 8x8: 49, 16x16: 9).")
        opts["window"], opts["stride"] = window, window // 2
    return opts


def _for(method: str, opts: dict) -> dict:
    keep = {"ig": ("n_steps", "baseline"), "smoothgrad": ("nt_samples", "noise"), "occlusion": ("window", "stride")}
    return {k: opts[k] for k in keep.get(method, ()) if k in opts}


def _attribution(entry: ModelEntry, chosen: inputs.Chosen, method: str, target: int, opts: dict) -> Attribution:
    cache: dict = st.session_state.setdefault(_RESULTS, {})
    key = (entry.name, entry.sha256, chosen.key, method, target, tuple(sorted(opts.items())))
    if key not in cache:
        with st.spinner(f"Computing {METHODS[method].label}..."):
            cache[key] = explain.attribute(state.load(entry), chosen.x, method, target, **opts)
        while len(cache) > 48:
            cache.pop(next(iter(cache)))
    return cache[key]


def _legend() -> None:
    bar = explain.colorize(np.tile(np.linspace(0, 1, 256), (10, 1)))
    st.image(bar, width=SIZE, caption="low → high attribution")


def _one(entry, chosen, method, target, opts, opacity) -> None:
    a = _attribution(entry, chosen, method, target, _for(method, opts))
    cols = st.columns(2, gap="small")
    cols[0].image(explain.upscale(chosen.small, SIZE), width=SIZE, caption="What the network sees (32x32)")
    cols[1].image(explain.overlay(chosen.small, a.map, opacity, SIZE), width=SIZE,
                  caption=f"{METHODS[method].label} for “{entry.classes[target]}”")
    with cols[1]:
        _legend()
    st.markdown(f"**{METHODS[method].label}**: {METHODS[method].summary}")
    st.caption(f"Computed in {a.seconds:.2f} s on {entry.label}.")


def _all(entry, chosen, target, opts, opacity) -> None:
    """A 4x2 grid: the input, the six maps, and the colour scale."""
    cols = st.columns(4, gap="small") + st.columns(4, gap="small")  # two rows, so each row lines up
    cols[0].image(explain.upscale(chosen.small, SIZE), width="stretch", caption="Input (32x32)")
    for i, method in enumerate(METHODS, start=1):
        a = _attribution(entry, chosen, method, target, _for(method, opts))
        cols[i].image(explain.overlay(chosen.small, a.map, opacity, SIZE), width="stretch",
                      caption=f"{METHODS[method].label} · {a.seconds:.2f} s")
    with cols[7]:
        st.caption(f"Each map explains “{entry.classes[target]}” on {entry.label}; the times are this server's.")
        st.image(explain.colorize(np.tile(np.linspace(0, 1, 256), (10, 1))), width="stretch",
                 caption="low → high attribution")


def render() -> None:
    entry, head = pickers.model_page_head(
        "Explain", "Which pixels made the network choose its answer? Each method answers a slightly different "
                   "question, so they rarely agree exactly.")
    if entry is None:
        return
    method = _method_picker(head[1])

    left, right = st.columns([1.3, 2.3], gap="large")
    with left:
        st.subheader("Image")
        found = inputs.pick("explain", multiple=False, offer_current=True)
        chosen = found[0] if found else None
        st.subheader("Settings")
        opts = _options(method)
        opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.6, step=0.05, key="explain_opacity")
    if chosen is None:
        right.info("Pick a test image, upload a photo, or take one with the camera.", icon=":material/arrow_back:")
        return
    inputs.set_current(chosen)
    probs = probabilities(state.load(entry), chosen.x)[0]
    target = _target_picker(head[2], chosen, probs, entry.classes)
    with right:
        if method == ALL:
            _all(entry, chosen, target, opts, opacity)
        else:
            _one(entry, chosen, method, target, opts, opacity)
