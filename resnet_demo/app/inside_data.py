"""The test images the Inside page and Fig. 7 measure on live, and their cached results, once per server.

The local CIFAR-10 test set when there is one, else the images shipped beside the weights. Those are
every shipped model's mistakes plus a gallery, so they are harder than the test set as a whole: every live
figure is shown beside the intact network's figure on the same images, never against the full-test accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from resnet_demo.data.cifar import Split, stratified_subset
from resnet_demo.data.loader import normalize
from resnet_demo.interpret.anatomy import response_stds
from resnet_demo.interpret.knockout import predict_without
from resnet_demo.store.registry import ModelEntry, weights_dir

from . import state

BATCH = 250


@dataclass(frozen=True)
class LiveImages:
    key: str  # what the images are, for cache keys
    description: str  # for captions
    batches: tuple[torch.Tensor, ...]  # normalised, BATCH at a time
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@st.cache_resource(max_entries=4, show_spinner=False)
def _prepare(key: str, description: str, _split: Split, n: int) -> LiveImages:
    sub = stratified_subset(_split, n, seed=0)
    x = normalize(torch.from_numpy(sub.images).permute(0, 3, 1, 2))
    return LiveImages(key, description, tuple(x.split(BATCH)), sub.labels)


def live_images(n: int) -> LiveImages | None:
    """A class-balanced subset of n test images (fixed, so every click compares like with like), or None."""
    local = state.local_test_set()
    if local is not None:
        return _prepare(f"local:{len(local)}:{n}", f"{min(n, len(local)):,} images of the local CIFAR-10 test set "
                        "(a fixed class-balanced subset)", local, n)
    try:
        shipped = state.shipped_test_images()
    except (OSError, ValueError, KeyError):
        shipped = None
    if not shipped:
        return None
    idx = sorted(shipped)
    split = Split(np.stack([shipped[i][0] for i in idx]), np.array([shipped[i][1] for i in idx], np.int64))
    return _prepare(f"shipped:{len(idx)}:{state.mtime(weights_dir() / 'test_images.npz')}:{n}",
                    f"{min(n, len(idx)):,} of the test images shipped with the weights (a fixed class-balanced "
                    "subset; they include every shipped model's mistakes, so they are harder than the test set "
                    "as a whole)", split, n)


def model_key(entry: ModelEntry) -> tuple:
    return entry.name, str(entry.weights), entry.sha256, state.mtime(entry.weights)


@st.cache_data(max_entries=256, show_spinner=False)
def predictions(_entry: ModelEntry, key: tuple, _images: LiveImages, images_key: str, block: int | None) -> np.ndarray:
    """Top-1 of every live image with `block` removed (None: intact); cached per model, images and block."""
    return predict_without(state.load(_entry), _images.batches, block)


@st.cache_data(max_entries=32, show_spinner=False)
def response_std(_entry: ModelEntry, key: tuple, _images: LiveImages, images_key: str) -> dict:
    """Fig. 7's stds of one model on the live images, when no measured table covers it."""
    return response_stds(state.load(_entry), _images.batches)
