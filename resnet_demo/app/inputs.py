"""Where an image comes from (CIFAR-10 test gallery, upload, camera), shared by the Predict and Explain pages.

Every source ends in the same `Chosen` record: the 32x32 picture the network sees, its normalised tensor, a
display-sized original and, for test images, the true label. The image last looked at is kept in
st.session_state (widget values vanish when their page is left; this does not), so Explain can pick up what
Predict showed. A gallery choice is also kept in the URL (?test=123) so a teacher can share it.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch
from PIL import Image

from resnet_demo.data.images import ImageError, load_input, to_tensor
from resnet_demo.nets.paper import CLASSES

from . import state, uploads
from .plain import plain

CURRENT = "inputs.current"  # session_state key of the image last looked at
_DECODED = "inputs.decoded"  # session_state: file id -> Chosen | error message, for the files shown now
GALLERY, UPLOAD, CAMERA, KEEP = "Test set", "Upload", "Camera", "Current image"
ANY_CLASS = "Any class"
DISPLAY_MAX = 640  # originals are kept at most this large: enough for the page, small in memory


@dataclass(frozen=True)
class Chosen:
    key: str  # stable id: "test:123", "upload:<sha1>", "camera:<sha1>"
    name: str  # what to call it on the page
    x: torch.Tensor  # (1, 3, 32, 32) normalised network input
    small: np.ndarray  # (32, 32, 3) uint8: what the network sees
    original: Image.Image  # for display, at most DISPLAY_MAX pixels on a side
    label: int | None = None  # the true class, for test images
    size: tuple[int, int] = (32, 32)  # the original's size before it was shrunk for display

    @property
    def label_name(self) -> str | None:
        return CLASSES[self.label] if self.label is not None else None

    def label_in(self, classes: tuple[str, ...]) -> int | None:
        """The true class as an index into a model's classes: a test image's CIFAR-10 label for a CIFAR-10 model,
        the class of that name for a model taught other classes, None when the model has no such class."""
        if self.label is None:
            return None
        name = CLASSES[self.label]
        return classes.index(name) if name in classes else None


def current() -> Chosen | None:
    return st.session_state.get(CURRENT)


def set_current(chosen: Chosen | None) -> None:
    if chosen is not None:
        st.session_state[CURRENT] = chosen


# --- the gallery -----------------------------------------------------------------------------------------

def gallery() -> tuple[dict[int, tuple[np.ndarray, int]], str]:
    """{test index: (image, label)} and where it comes from: the whole local test set if present, else the
    images shipped beside the weights (a dozen per class plus every shipped model's mistakes)."""
    local = state.local_test_set()
    if local is not None:
        return {i: (local.images[i], int(local.labels[i])) for i in range(len(local))}, "the local CIFAR-10 test set"
    try:
        images = state.shipped_test_images()
    except (OSError, ValueError, KeyError) as e:
        state.problem("The test images shipped with the weights could not be read.", e, warning=True)
        images = None
    return images or {}, "the test images shipped with the weights"


def _from_test(index: int, image: np.ndarray, label: int) -> Chosen:
    small = np.ascontiguousarray(image, dtype=np.uint8)
    return Chosen(key=f"test:{index}", name=f"Test image #{index}", x=to_tensor(small), small=small,
                  original=Image.fromarray(small), label=int(label))


def _wanted_index(images: dict) -> int | None:
    """The image a shared link names (?test=123), or None for anything else: str.isdigit also accepts "²" and
    a 5,000-digit number, which int() refuses, so only a few ASCII digits are read."""
    wanted = state.query_param("test")
    if wanted is None or not (0 < len(wanted) <= 9 and wanted.isascii() and wanted.isdigit()):
        return None
    return int(wanted) if int(wanted) in images else None


def _gallery_picker(key: str) -> Chosen | None:
    images, where = gallery()
    if not images:
        st.info("No CIFAR-10 test images are available here (no `test_images.npz` beside the weights and no local "
                "test set). Upload a photo instead.")
        return None
    wanted = _wanted_index(images)
    cls_key, idx_key = f"{key}_class", f"{key}_index"
    if idx_key not in st.session_state and wanted is not None:
        st.session_state[idx_key] = wanted
        st.session_state[cls_key] = ANY_CLASS
    cls = st.selectbox("Class", (ANY_CLASS, *CLASSES), key=cls_key)
    indices = [i for i, (_, lab) in images.items() if cls == ANY_CLASS or CLASSES[lab] == cls]
    if not indices:
        st.info(f"No {cls} images among {where}.")
        return None
    if st.session_state.get(idx_key) not in indices:
        st.session_state[idx_key] = indices[0]
    left, right = st.columns([1.9, 1.2], vertical_alignment="bottom")
    if right.button("Random", key=f"{key}_random", icon=":material/casino:", width="stretch",
                    help=f"A random image from {where}"):
        st.session_state[idx_key] = random.choice(indices)
    index = left.selectbox(f"Image ({len(indices):,} available)", indices, key=idx_key,
                           format_func=lambda i: f"#{i} · {CLASSES[images[i][1]]}",
                           help=f"From {where}; the number is the image's index in the CIFAR-10 test set.")
    state.set_query_param("test", str(index))
    return _from_test(index, *images[index])


# --- uploads and the camera ------------------------------------------------------------------------------

def decode(data: bytes, name: str, kind: str = "upload") -> Chosen:
    """Bytes a person supplied -> Chosen; raises ImageError with a message meant for them."""
    x, small, original = load_input(data, name)
    size = original.info.get("original_size", original.size)
    if max(original.size) > DISPLAY_MAX:
        original = original.copy()
        original.thumbnail((DISPLAY_MAX, DISPLAY_MAX), Image.Resampling.LANCZOS)
    digest = hashlib.sha1(data).hexdigest()[:16]
    return Chosen(key=f"{kind}:{digest}", name=name, x=x, small=np.asarray(small, dtype=np.uint8), original=original,
                  size=size)


def _decode_all(files: list, kind: str) -> list[Chosen | str]:
    """Decode each file once (a large photo takes a moment); the cache keeps only the files shown now, so a
    decoded image goes when its file does."""
    cache: dict = st.session_state.get(_DECODED, {})
    cache = {f.file_id: cache[f.file_id] if f.file_id in cache else _decode_or_message(f, kind) for f in files}
    st.session_state[_DECODED] = cache
    return list(cache.values())


def _decode_or_message(f, kind: str) -> Chosen | str:
    try:
        return decode(f.getvalue(), f.name if kind == "upload" else "Camera photo", kind)
    except ImageError as e:
        return str(e)


def _show(results: list[Chosen | str]) -> list[Chosen]:
    """The decoded images; a file that could not be decoded gets its message instead."""
    for r in results:
        if isinstance(r, str):
            st.error(plain(r), icon=":material/broken_image:")  # the message quotes the file's name
    return [r for r in results if not isinstance(r, str)]


def _uploads(key: str, multiple: bool) -> list[Chosen]:
    round_key, refused_key = f"{key}_upload_round", f"{key}_upload_refused"
    if refused_key in st.session_state:
        st.error(st.session_state.pop(refused_key), icon=":material/block:")
    files = st.file_uploader(
        "Images (PNG, JPEG, WebP, GIF, BMP, TIFF, ...)" if multiple else "An image (any format Pillow reads)",
        accept_multiple_files=multiple, key=f"{key}_upload{st.session_state.get(round_key, 0) or ''}",
        help=f"Each image is centre-cropped to a square and shrunk to 32x32 pixels: all the network ever sees. "
             f"Up to {uploads.MAX_FILES} at a time.")
    files = files if isinstance(files, list) else [files] if files else []
    refused = uploads.refusal(files)
    if refused:  # let go of every file now, and start over with a fresh, empty widget (a new key)
        uploads.release(f.file_id for f in files)
        st.session_state[round_key] = st.session_state.get(round_key, 0) + 1
        st.session_state[refused_key] = refused
        st.rerun()
    uploads.release_unused(f.file_id for f in files)
    return _show(_decode_all(files, "upload"))


def _camera(key: str) -> Chosen | None:
    on = st.toggle("Turn the camera on", key=f"{key}_camera_on",
                   help="Off by default so the browser asks for the camera only when you want it.")
    shot = st.camera_input("Take a picture of something: a cat, a car, a toy truck...",
                           key=f"{key}_camera") if on else None
    uploads.release_unused([shot.file_id] if shot is not None else [])
    found = _show(_decode_all([shot] if shot is not None else [], "camera"))
    return found[0] if found else None


# --- the picker ------------------------------------------------------------------------------------------

def pick(key: str, multiple: bool = False, offer_current: bool = False) -> list[Chosen]:
    """Draw the source choice and its widgets; return the valid images (bad files get an st.error each).

    offer_current: also offer the image last looked at elsewhere (the Explain page reuses Predict's).
    """
    uploads.trim_memory(at_most_every_s=10)  # what ended sessions and past decodes freed goes back to the OS
    sources = [GALLERY, UPLOAD, CAMERA]
    keep = current() if offer_current else None
    if keep is not None:
        sources.insert(0, KEEP)
    src_key = f"{key}_source"
    if st.session_state.get(src_key) not in sources:
        st.session_state[src_key] = sources[0]
    source = st.radio("Image source", sources, key=src_key, horizontal=True, label_visibility="collapsed",
                      format_func=lambda s: f"{s}: {plain(keep.name)}" if s == KEEP and keep else s)
    if source != GALLERY:
        state.set_query_param("test", None)  # a shared link should not claim a test image that is not shown
    if source in (KEEP, GALLERY):
        uploads.release_unused(())  # an upload left behind is not kept on the server
    if source == KEEP and keep is not None:
        return [keep]
    if source == GALLERY:
        chosen = _gallery_picker(key)
        return [chosen] if chosen else []
    if source == UPLOAD:
        return _uploads(key, multiple)
    shot = _camera(key)
    return [shot] if shot else []
