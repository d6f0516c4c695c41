"""Paper page: the idea (degradation, H(x) = F(x) + x), Table 6 beside our measured errors, Fig. 6, Fig. 7, and the
architectures.

Only measured numbers: the "this project" column comes from the shipped manifest (each model evaluated on
the full test set); a depth with no shipped model says so instead of showing a number.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from resnet_demo.nets.model import Arch, describe
from resnet_demo.nets.paper import (
    FIG6_CORE,
    FIG6_NOTE,
    PRESET_DEPTHS,
    PUBLIC_REPRO_ERROR,
    TABLE6_ERROR,
    TABLE6_PARAMS_M,
)
from resnet_demo.store.events import epochs as epoch_rows
from resnet_demo.store.registry import ModelEntry, how_trained, shipped_models, with_history
from resnet_demo.store.weights import WeightsError

from .. import fig7, pickers, state
from ..charts import curves

NOT_TRAINED = "not trained yet"
FIG6_MODELS = tuple(f"{kind}{d}" for kind in ("plain", "resnet") for d in PRESET_DEPTHS)


def render() -> None:
    st.title("Deep Residual Learning for Image Recognition")
    st.caption("He, Zhang, Ren, Sun — CVPR 2016 (arXiv:1512.03385). Section 4.2: CIFAR-10.")
    shipped = _shipped()
    _idea()
    st.divider()
    _table6(shipped)
    st.divider()
    _fig6(_with_history())
    st.divider()
    fig7.section(shipped)
    st.divider()
    _architecture()


def _shipped() -> list[ModelEntry]:
    try:
        return shipped_models()
    except WeightsError as e:
        state.problem("The shipped models could not be read.", e, warning=True)
        return []


def _with_history() -> list[ModelEntry]:
    try:
        return with_history()
    except WeightsError:
        return []  # _shipped() has said why


def _idea() -> None:
    st.header("The degradation problem")
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown(
            "Stacking more layers should never hurt: a deeper net could copy a shallower one and set the extra "
            "layers to the identity. Yet in practice a **plain** 56-layer network has *higher training error* "
            "than a 20-layer one. This is not overfitting (the training error is worse too) and not vanishing "
            "gradients (batch normalisation keeps them healthy): the optimiser simply fails to find the "
            "identity-like solution through many nonlinear layers.")
        st.markdown(
            "**Residual learning** makes that solution easy. Instead of asking a few stacked layers to fit the "
            "desired mapping $H(x)$ directly, let them fit the *residual* $F(x) = H(x) - x$ and add the input "
            "back through a shortcut connection:")
        st.latex(r"H(x) \;=\; F(x, \{W_i\}) \;+\; x")
        st.markdown(
            "If the identity is (nearly) optimal, the layers only have to push $F$ towards zero. The shortcut "
            "adds no parameters and almost no computation (option A), and gradients flow through it unchanged, "
            "so depth now helps: ResNet-56 beats ResNet-20, and ResNet-110 beats both.")
    with right:
        st.markdown("**One basic block** (two 3×3 convolutions):")
        st.code("        x\n"
                "        │────────────────┐\n"
                "   conv 3×3 → BN → ReLU  │\n"
                "   conv 3×3 → BN         │ identity\n"
                "        │     F(x)       │\n"
                "       (+) ◄─────────────┘\n"
                "        │  F(x) + x\n"
                "       ReLU\n"
                "        ▼", language=None)
        st.markdown(
            "- **plain** net: the same block without the shortcut.\n"
            "- **option A**: where the map size halves and the filters double, the shortcut subsamples and "
            "pads the new channels with zeros (no parameters) — the paper's CIFAR-10 choice.\n"
            "- **option B**: a 1×1 convolution (with BN) projects the shortcut there instead.")


def _measured(shipped: list[ModelEntry], depth: int) -> ModelEntry | None:
    """The shipped paper-architecture ResNet (option A) of this depth; the best one if several."""
    found = [e for e in shipped if e.arch == Arch(depth, False, "A") and e.test_accuracy is not None]
    return max(found, key=lambda e: e.test_accuracy) if found else None


def _error_pct(e: ModelEntry) -> float:
    return 100 * (1 - e.test_accuracy)


def _versus(ours: float, paper: float) -> str:
    """Points of error against the paper's, rounded as both are shown, so the class sees which depths meet it."""
    diff = round(ours, 2) - paper
    if abs(diff) < 0.005:
        return "equal"
    return f"{diff:+.2f} ({'better' if diff < 0 else 'worse'})".replace("-", "\u2212")


def _table6(shipped: list[ModelEntry]) -> None:
    st.header("Table 6: CIFAR-10 test error")
    rows = []
    for depth in sorted(TABLE6_ERROR):
        e = _measured(shipped, depth)
        rows.append({
            "Network": f"ResNet-{depth}",
            "Params (paper)": f"{TABLE6_PARAMS_M[depth]}M",
            "Paper error %": TABLE6_ERROR[depth],
            "Public reproduction error %": PUBLIC_REPRO_ERROR.get(depth),
            "This project error %": f"{_error_pct(e):.2f}" if e else NOT_TRAINED,
            "vs paper": _versus(_error_pct(e), TABLE6_ERROR[depth]) if e else "",
            "How we trained it": how_trained(e) if e else "",
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "Paper error %": st.column_config.NumberColumn(format="%.2f"),
        "Public reproduction error %": st.column_config.NumberColumn(format="%.2f"),
    })
    st.caption("Paper: Table 6, option A shortcuts, 164 epochs (64k iterations), single-view test error. "
               "Public reproduction: akamaster/pytorch_resnet_cifar10 (its README). This project: the shipped "
               "weights evaluated on all 10,000 test images (single view); their recipe may be shorter than the "
               "paper's, as the last column says.")
    others = [e for e in shipped if e.test_accuracy is not None and (e.arch.plain or e.arch.shortcut != "A"
                                                                      or e.arch.depth not in TABLE6_ERROR)]
    if others:
        st.markdown("Other shipped models (not in Table 6):")
        st.dataframe(pd.DataFrame([{"Network": e.label, "Model": e.name, "This project error %": f"{_error_pct(e):.2f}",
                                    "How we trained it": how_trained(e)} for e in others]),
                     hide_index=True, width="stretch")


def _fig6(entries: list[ModelEntry]) -> None:
    """Every curve of one recipe: retired models' histories count, so a better ResNet elsewhere leaves it intact."""
    st.header("Fig. 6: plain vs residual")
    st.caption(FIG6_NOTE)
    with_history = {e.name: e for e in entries}
    wanted = [n for n in FIG6_MODELS if n in with_history]
    missing = [n for n in FIG6_CORE if n not in with_history]
    extra = [n for n, e in with_history.items() if n not in FIG6_MODELS]
    if not with_history:
        st.info("No shipped model has a training history yet, so there are no curves to draw. Train plain and "
                "residual nets on the **Train** page and compare them under *Compare runs*.")
        return
    names = wanted or extra
    labels = [with_history[n].label for n in names]
    histories = [(lab if labels.count(lab) == 1 else f"{lab} ({n})", with_history[n].load_history())
                 for lab, n in zip(labels, names)]
    histories = [(label, h) for label, h in histories if epoch_rows(h)]
    if histories:
        plain = [(lab, h) for lab, h in histories if lab.startswith("Plain")]
        resid = [(lab, h) for lab, h in histories if not lab.startswith("Plain")]
        if plain and resid:
            a, b = st.columns(2)
            y_range = curves.error_range(plain, resid)  # one scale, so the panels compare as the paper's do
            a.plotly_chart(curves.error_figure(plain, "Plain networks", height=380, y_range=y_range),
                           key="paper_fig6_plain")
            b.plotly_chart(curves.error_figure(resid, "ResNets", height=380, y_range=y_range),
                           key="paper_fig6_resnet")
        else:
            st.plotly_chart(curves.error_figure(histories, height=400), key="paper_fig6")
        recipes = sorted({how_trained(with_history[n]) for n in names} - {""})
        same = (f" Every curve has one recipe ({recipes[0]}), as in the paper's figure; Table 6 may show a "
                "longer-trained model of a depth." if len(recipes) == 1 else
                f" The curves' recipes differ ({'; '.join(recipes)})." if recipes else "")
        st.caption("Dashed: training error (running value on augmented batches); solid: test error." + same)
    if missing:
        st.caption("Not shipped yet: " + ", ".join(missing) + ". Fig. 6 needs all four "
                   "(plain-20/56 and ResNet-20/56) for the full comparison.")


@st.cache_data(max_entries=64, show_spinner=False)
def _describe(depth: int, plain: bool, shortcut: str) -> dict:
    return describe(Arch(depth, plain, shortcut))


def _architecture() -> None:
    st.header("Architecture")
    arch = pickers.arch_picker("paper", columns=tuple(st.columns(3)))
    if arch is None:
        return
    info = _describe(arch.depth, arch.plain, arch.shortcut)
    m = st.columns(4)
    paper = TABLE6_PARAMS_M.get(arch.depth) if not arch.plain else None
    m[0].metric("Parameters", f"{info['params'] / 1e6:.3f}M", help=f"Table 6: {paper}M" if paper else None)
    m[1].metric("MACs per image", f"{info['macs'] / 1e6:.1f}M")
    m[2].metric("Weighted layers", f"{info['weighted_layers']}")
    m[3].metric("Shortcuts", f"{info['shortcuts']}")
    stages = [{"Stage": "stem", "Output map": "32×32", "Filters": 16, "Blocks": "–", "Layers": "conv3×3"}]
    for s in info["stages"]:
        stages.append({"Stage": f"{s['stage']}", "Output map": f"{s['output_size']}×{s['output_size']}",
                       "Filters": s["filters"], "Blocks": str(s["blocks"]),
                       "Layers": f"{s['blocks']} × [conv3×3, conv3×3]" + ("" if arch.plain else " + shortcut")})
    stages.append({"Stage": "head", "Output map": "1×1", "Filters": 10, "Blocks": "–",
                   "Layers": "global average pool, 10-way fc, softmax"})
    st.dataframe(pd.DataFrame(stages), hide_index=True, width="stretch")
    where = ("none: a plain net" if arch.plain else
             "identity, zero-padded where the shape changes (option A)" if arch.shortcut == "A" else
             f"identity, with {info['projection_convs']} 1×1 projections where the shape changes (option B)")
    n = info["blocks_per_stage"]
    st.caption(f"{info['label']}: n = {n} blocks per stage; depth = 6n + 2 = {info['weighted_layers']} "
               f"(1 stem conv + 3 × {n} × 2 convs + 1 fc). Shortcuts: {where}. MACs count the convolutions "
               "and the classifier for one 32×32 image.")
