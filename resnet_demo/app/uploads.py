"""The upload bytes a browser tab keeps on the server: capped, and let go as soon as no widget shows them.

Streamlit holds every uploaded file in memory until the tab closes or the browser deletes it, and the browser does
not delete a file whose widget merely left the page (another source, another page). So each run releases the
files an earlier run showed that no widget shows now, and an upload over the caps is refused as a whole and
released at once: thirty students cannot park gigabytes on a classroom server.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from collections.abc import Iterable, Sequence

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.uploaded_file_manager import UploadedFile

MAX_FILES = 10  # images in one upload
MAX_SESSION_BYTES = 24 * 2**20  # upload bytes one browser tab may hold on the server at a time

_SHOWN = "uploads.shown"  # session_state: ids of the files the last run's widget showed


def _store():
    """(Streamlit's uploaded-file manager, this session's id), or (None, None) outside a script run."""
    ctx = get_script_run_ctx()
    return (ctx.uploaded_file_mgr, ctx.session_id) if ctx is not None else (None, None)


def held_bytes(files: Sequence[UploadedFile]) -> int:
    """Upload bytes this session holds on the server; just the widget's files where the store cannot be read."""
    manager, session = _store()
    storage = getattr(manager, "file_storage", None)  # MemoryUploadedFileManager, Streamlit's only store
    if isinstance(storage, dict):
        return sum(len(rec.data) for rec in storage.get(session, {}).values())
    return sum(f.size for f in files)


def refusal(files: Sequence[UploadedFile], max_files: int = MAX_FILES) -> str | None:
    """Why this upload cannot be kept, in words for a student; None when it fits."""
    if len(files) > max_files:
        return (f"At most {max_files} images at a time: {len(files)} were chosen, so none was kept. "
                f"Choose up to {max_files} and upload them again.")
    held = held_bytes(files)
    if held > MAX_SESSION_BYTES:
        return (f"These uploads come to {held / 2**20:.1f} MB; at most {MAX_SESSION_BYTES / 2**20:.0f} MB can be "
                f"kept at a time, so none was kept. Upload fewer or smaller images (a phone photo is 2-5 MB).")
    return None


def release(file_ids: Iterable[str]) -> None:
    """Delete these files from the server's memory now (their widget shows them no more, or they were refused)."""
    manager, session = _store()
    ids = list(file_ids)
    if manager is None or not ids:
        return
    for file_id in ids:
        manager.remove_file(session, file_id)
    trim_memory()


def release_unused(in_use: Iterable[str]) -> None:
    """Release the files the last run showed that no widget shows now (removed, replaced, or on a page left
    behind). A file no run has shown yet is kept: its upload may have finished before the rerun that shows it."""
    in_use = set(in_use)
    shown: set[str] = st.session_state.get(_SHOWN, set())
    release(shown - in_use)
    st.session_state[_SHOWN] = in_use


def trim_memory(at_most_every_s: float = 0.0) -> None:
    """Collect garbage and hand freed heap back to the OS. glibc keeps freed blocks below its (self-raising) mmap
    threshold, so a server that decoded large uploads for sessions long gone would stay that large.

    This replaces Streamlit's collection after every script run (`runner.postScriptGC`, off in config.toml): with
    torch loaded, a full collection takes tens of milliseconds, and every watching tab's refresh paid it once a
    second, so a few tabs on the Train page took a whole core (BENCHMARKS.md, "Tabs watching a job")."""
    global _last_trim
    now = time.monotonic()
    if now - _last_trim < at_most_every_s:
        return
    _last_trim = now
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


def _load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_libc, _last_trim = _load_libc(), 0.0
