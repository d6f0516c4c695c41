"""The choices several pages offer, drawn the same way on each: a model (remembered in the URL) and an
architecture (depth, plain or residual, shortcut option). Labels and the default model come from the registry,
so a picker and the command line name a model alike."""
from __future__ import annotations

import streamlit as st

from resnet_demo.nets.model import Arch
from resnet_demo.nets.paper import PRESET_DEPTHS
from resnet_demo.store.registry import ModelEntry, default_model, model_label

from . import state

OTHER = "other"
SHORTCUTS = {"A": "A: identity + zero padding", "B": "B: 1×1 projection"}


def model_page_head(title: str, caption: str, spec=3, **columns) -> tuple[ModelEntry | None, list]:
    """The top of a page about one model: its title, what it shows, and a row of columns whose first picks the
    model (None where there is none; the page has then said so)."""
    st.title(title)
    st.caption(caption)
    head = st.columns(spec, **columns)
    return model_picker(container=head[0]), head


def model_picker(label: str = "Model", key: str = "model", entries: list[ModelEntry] | None = None,
                 container=None) -> ModelEntry | None:
    """A selectbox over the models on offer, remembered in the URL (?model=...) so a teacher can share the view."""
    entries = state.models() if entries is None else entries
    if not entries:
        state.no_models_message()
        return None
    names = [e.name for e in entries]
    wanted = state.query_param(key)
    if key not in st.session_state or st.session_state[key] not in names:
        st.session_state[key] = wanted if wanted in names else default_model(entries).name
    by_name = {e.name: e for e in entries}
    where = container or st
    choice = where.selectbox(label, names, key=key, format_func=lambda n: model_label(by_name[n]))
    state.set_query_param(key, choice)
    return by_name[choice]


def arch_picker(key: str, columns: tuple | None = None, explain: bool = False) -> Arch | None:
    """Depth, network and shortcut (in three columns, or one under the other); None, with the reason shown, for a
    depth that is not of the form 6n+2."""
    depth_col, kind_col, shortcut_col = columns or (st, st, st)
    depth = depth_col.selectbox("Depth", [*PRESET_DEPTHS, OTHER], key=f"{key}_depth",
                                format_func=lambda d: f"{d} layers" if d != OTHER else "other (6n+2)",
                                help="The paper's CIFAR-10 depths. Any 6n+2 works: n blocks per stage, 3 stages.")
    if depth == OTHER:
        depth = int(depth_col.number_input("Depth (6n+2)", min_value=2, max_value=1202, value=8, step=6,
                                           key=f"{key}_depth_other"))
    kind = kind_col.radio("Network", ["residual", "plain"], horizontal=True, key=f"{key}_kind",
                          help="Plain: the same layers with the shortcuts removed (the paper's Fig. 6 baseline).")
    shortcut = shortcut_col.radio("Shortcut", list(SHORTCUTS), horizontal=True, key=f"{key}_shortcut",
                                  disabled=kind == "plain", format_func=SHORTCUTS.get,
                                  help="Where the shape changes: A pads the identity with zeros (the paper's CIFAR "
                                       "choice, no parameters); B uses a 1×1 convolution.")
    try:
        arch = Arch(depth, kind == "plain", "A" if kind == "plain" else shortcut)
    except ValueError as e:
        depth_col.error(str(e))
        return None
    if explain:
        n = (depth - 2) // 6
        depth_col.caption(f"{n} block{'s' if n > 1 else ''} per stage × 3 stages × 2 convs + stem + classifier "
                          f"= {depth} weighted layers")
    return arch
