"""Shared app state: models cached once per server, the list of models on offer (with the models this tab taught
on the Teach page, which are the tab's own), query-param sync, error guarding."""
from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from resnet_demo.data import testimages
from resnet_demo.data.cifar import DataError, Split, find_cifar10, load_cifar10
from resnet_demo.store.registry import ModelEntry, list_models, weights_dir
from resnet_demo.store.weights import WeightsError

log = logging.getLogger("resnet_demo.app")


MODEL_UNREADABLE = "This model could not be loaded: its weights file is missing or damaged. Pick another model."
TAUGHT = "taught"  # ModelEntry.source of a model taught in this tab: held in its session, never on disk
_TAUGHT = "state.taught"  # session_state: {entry name: (ModelEntry, network)}, this tab's taught models


def problem(message: str, exc: BaseException | None = None, warning: bool = False) -> None:
    """Tell the person at the page what failed, in plain words; the details (exception text, server paths) go to
    the server log only, under a short reference the teacher can search for."""
    reference = secrets.token_hex(3)
    log.error("%s [reference %s]", message, reference, exc_info=exc)
    (st.warning if warning else st.error)(f"{message} (The server log has the details: reference {reference}.)")


def guarded(fn: Callable[[], None]) -> None:
    """Run a page; anything unexpected becomes one clear message in the page (and a log line), never a traceback."""
    try:
        fn()
    except WeightsError as e:
        problem(MODEL_UNREADABLE, e)
    except Exception as e:  # noqa: BLE001 - the last line of defence for a live classroom
        if type(e).__name__ in ("RerunException", "StopException", "RerunData"):  # Streamlit control flow
            raise
        problem("Something went wrong on this page. The rest of the app still works: try another choice, or "
                "reload the page.", e)


@st.cache_resource(show_spinner="Loading the model...", max_entries=32)
def _load(path: str, sha256: str | None, mtime: float) -> torch.nn.Module:
    from resnet_demo.store.weights import load_model

    return load_model(path, sha256)[0]


def load(entry: ModelEntry) -> torch.nn.Module:
    """The model, loaded once per server and shared by every session (read-only: eval mode, never trained); a
    model this tab taught comes from the tab's own session."""
    if entry.source == TAUGHT:
        held = st.session_state.get(_TAUGHT, {}).get(entry.name)
        if held is None:
            raise WeightsError(f"the taught model {entry.name} is no longer held by this tab")
        return held[1]
    return _load(str(entry.weights), entry.sha256, mtime(entry.weights))


def set_taught(models: list[tuple[ModelEntry, torch.nn.Module]]) -> None:
    """The models this tab taught last (they replace the earlier ones): offered on every page of this tab only,
    and dropped with the tab's session."""
    st.session_state[_TAUGHT] = {entry.name: (entry, model.eval()) for entry, model in models}


def taught_models() -> list[ModelEntry]:
    return [entry for entry, _ in st.session_state.get(_TAUGHT, {}).values()]


def mtime(path: Path | None) -> float:
    """A cache key part that changes when the file does (0 when it is missing)."""
    return path.stat().st_mtime if path is not None and path.is_file() else 0.0


@st.cache_resource(max_entries=2, show_spinner="Reading the shipped test images...")
def _shipped_test_images(directory: str, modified: float) -> dict[int, tuple[np.ndarray, int]] | None:
    return testimages.read_test_images(Path(directory))


def shipped_test_images() -> dict[int, tuple[np.ndarray, int]] | None:
    """{test index: (image, label)} shipped beside the weights (a gallery + every shipped model's mistakes).
    Raises OSError/ValueError/KeyError when the file is unreadable."""
    return _shipped_test_images(str(weights_dir()), mtime(weights_dir() / "test_images.npz"))


@st.cache_resource(max_entries=1, show_spinner="Reading the local test set...")
def _local_test(directory: str, modified: float) -> Split:
    return load_cifar10(directory).test


def local_test_set() -> Split | None:
    """The test split on disk ($RESNET_DEMO_DATA or ./data), loaded once per server, or None; never downloads."""
    d = find_cifar10()
    if d is None:
        return None
    try:
        return _local_test(str(d), max(mtime(p) for p in d.iterdir()) if d.is_dir() else 0.0)
    except (DataError, OSError, ValueError) as e:
        problem("The local CIFAR-10 test set could not be read; using the shipped test images instead.", e,
                warning=True)
        return None


def models() -> list[ModelEntry]:
    """The models on offer (shipped, and finished runs not at chance level), then the ones this tab taught;
    reread on every call (cheap: small JSON files) so new runs appear."""
    try:
        return list_models() + taught_models()
    except WeightsError as e:
        problem("The list of models could not be read.", e)
        return taught_models()


def no_models_message() -> None:
    st.warning(
        "No trained model is available yet: `weights/manifest.json` lists none and `runs/` holds no finished run "
        "that learned more than chance.\n\n"
        "Train one on the **Train** page (a few minutes on a laptop CPU with the *classroom* preset), or from a "
        "terminal: `python -m resnet_demo train --depth 20 --preset classroom`."
    )


def query_param(key: str, default: str | None = None) -> str | None:
    return st.query_params.get(key, default)


def set_query_param(key: str, value: str | None) -> None:
    if value is None:
        st.query_params.pop(key, None)
    elif st.query_params.get(key) != value:
        st.query_params[key] = value
