"""Every attribution method gives a finite 32x32 map in [0, 1] and leaves the (shared) model exactly as it was."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resnet_demo.interpret.explain import (
    METHODS,
    attribute,
    attribute_inplace,
    colorize,
    overlay,
    private_copy,
    to_map,
    upscale,
)
from resnet_demo.nets.model import build_model

FAST = {"ig": {"n_steps": 4}, "smoothgrad": {"nt_samples": 3}, "occlusion": {"window": 8, "stride": 8}}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(8).eval()
    with torch.no_grad():  # non-trivial BN statistics, so the maps are not all alike
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m


@pytest.fixture(scope="module")
def x():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, \
        {n: p.requires_grad for n, p in model.named_parameters()}


def hooks_left(model) -> list[str]:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [f"{name or 'model'}.{k}" for name, mod in model.named_modules() for k in kinds if getattr(mod, k)]


def assert_unchanged(model, before):
    state, grads = before
    after_state, after_grads = snapshot(model)
    assert after_state.keys() == state.keys()
    assert all(torch.equal(state[k], after_state[k]) for k in state)
    assert after_grads == grads
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    assert hooks_left(model) == []


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_gives_a_map_and_leaves_the_model_alone(model, x, method):
    before = snapshot(model)
    x_before = x.clone()
    a = attribute(model, x, method, target=3, **FAST.get(method, {}))
    assert a.method == method and a.target == 3 and a.seconds > 0
    assert a.map.shape == (32, 32) and a.map.dtype == np.float32
    assert np.isfinite(a.map).all() and a.map.min() >= 0 and a.map.max() <= 1
    assert a.map.max() > 0, "a random network still has some attribution somewhere"
    assert np.isfinite(a.raw).all() and a.raw.shape[-2:] == (32, 32)
    assert_unchanged(model, before)
    assert torch.equal(x, x_before) and not x.requires_grad


@pytest.mark.parametrize("method", list(METHODS))
def test_captum_removes_its_hooks_from_the_model_it_ran_on(model, x, method):
    """attribute() works on a copy anyway; this checks Captum's own clean-up on the model it actually hooks."""
    m = private_copy(model)
    before = snapshot(m)
    attribute_inplace(m, x, method, target=1, **FAST.get(method, {}))
    assert_unchanged(m, before)


def test_guided_hooks_do_not_leak_into_a_later_plain_gradient(model, x):
    plain = attribute(model, x, "saliency", target=2)
    attribute(model, x, "guided-gradcam", target=2)
    again = attribute(model, x, "saliency", target=2)
    np.testing.assert_array_equal(plain.raw, again.raw)


def test_targets_differ_and_ig_options_are_honoured(model, x):
    a = attribute(model, x, "gradcam", target=0).raw
    b = attribute(model, x, "gradcam", target=9).raw
    assert not np.array_equal(a, b)
    black = attribute(model, x, "ig", target=0, n_steps=4, baseline="black").raw
    mean = attribute(model, x, "ig", target=0, n_steps=4, baseline="mean").raw
    assert not np.array_equal(black, mean)


def test_completeness_of_integrated_gradients(model, x):
    """IG's attributions sum to f(x) - f(baseline): a check that we pass the baseline we think we pass."""
    a = attribute(model, x, "ig", target=4, n_steps=64, baseline="mean")
    with torch.no_grad():
        gap = (model(x)[0, 4] - model(torch.zeros_like(x))[0, 4]).item()
    assert a.raw.sum() == pytest.approx(gap, rel=0.05, abs=1e-3)


def test_bad_requests_are_refused_clearly(model, x):
    with pytest.raises(ValueError, match="unknown attribution method"):
        attribute(model, x, "lime", target=0)
    with pytest.raises(ValueError, match="baseline"):
        attribute(model, x, "ig", target=0, baseline="white")
    with pytest.raises(ValueError, match="expected one normalised"):
        attribute(model, torch.zeros(2, 3, 32, 32), "saliency", target=0)
    with pytest.raises(ValueError, match="occlusion window"):
        attribute(model, x, "occlusion", target=0, window=4, stride=8)


def test_to_map_handles_nothing_and_nan():
    for method in METHODS:
        assert to_map(np.zeros((3, 32, 32)), method).max() == 0
        m = to_map(np.full((1, 32, 32), np.nan), method)
        assert np.isfinite(m).all() and m.max() == 0
    m = to_map(np.arange(32 * 32, dtype=float).reshape(1, 32, 32), "gradcam")
    assert m.max() == 1 and m.min() == 0


def test_drawing_helpers():
    img = np.full((32, 32, 3), 100, np.uint8)
    heat = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    assert colorize(heat).shape == (32, 32, 3)
    assert tuple(colorize(np.array([[0.0, 1.0]]))[0, 0]) != tuple(colorize(np.array([[0.0, 1.0]]))[0, 1])
    assert upscale(img).shape == (256, 256, 3)
    np.testing.assert_array_equal(overlay(img, heat, opacity=0.0), upscale(img))
    np.testing.assert_array_equal(overlay(img, heat, opacity=1.0), upscale(colorize(heat)))
