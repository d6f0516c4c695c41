""""Download this model" buttons: the chosen model as safetensors or ONNX, made only when a button is clicked.

Streamlit runs a callable `data` on click, in its own thread, so the page never waits for the ONNX exporter
(several seconds); the bytes are cached per weights file, so a second click, or a second student, is instant. A
model taught in a tab is the tab's own: its bytes are made on each click and never cached for the server.
"""
from __future__ import annotations

import streamlit as st

from resnet_demo.store.export import FORMATS, export_bytes, filename, onnx_available
from resnet_demo.store.registry import ModelEntry

from . import state

MIME = {"safetensors": "application/octet-stream", "onnx": "application/octet-stream"}
HELP = {
    "safetensors": "The weights with the architecture, class names and normalisation in the metadata; "
                   "`python -m resnet_demo predict --model FILE` loads it back.",
    "onnx": "The whole network for Netron or any ONNX runtime. Input \"image\": N×3×32×32 RGB, normalised with "
            "the mean/std in the file's metadata; output \"logits\", one per class, in the order of the metadata's "
            "\"classes\".",
}


@st.cache_data(max_entries=8, show_spinner=False)
def _bytes(_entry: ModelEntry, key: tuple, fmt: str) -> bytes:
    return export_bytes(_entry, fmt, state.load(_entry))


def _maker(entry: ModelEntry, key: tuple, fmt: str):
    """What the button calls on click (in a thread of its own, where this tab's session cannot be read, so a
    taught model is taken from the session now)."""
    if entry.source == state.TAUGHT:
        model = state.load(entry)
        return lambda: export_bytes(entry, fmt, model)
    return lambda: _bytes(entry, key, fmt)


def export_buttons(entry: ModelEntry, container=None, key_prefix: str = "download") -> None:
    """One download button per format, in a popover under the model picker."""
    if entry.weights is None and entry.source != state.TAUGHT:
        return
    where = (container or st).popover("Download this model", icon=":material/download:")
    key = (entry.name, str(entry.weights), entry.sha256, state.mtime(entry.weights))
    for fmt in FORMATS:
        if fmt == "onnx" and not onnx_available():
            where.caption("ONNX export needs the `onnx` and `onnxscript` packages (`pip install -r "
                          "requirements.txt`).")
            continue
        where.download_button(f"{fmt} ({filename(entry, fmt)})", data=_maker(entry, key, fmt),
                              file_name=filename(entry, fmt), mime=MIME[fmt], key=f"{key_prefix}_{fmt}",
                              icon=":material/download:", help=HELP[fmt], on_click="ignore", width="stretch")
