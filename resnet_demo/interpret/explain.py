"""Which pixels made the network say "cat"? Six Captum attribution methods behind one function.

    attribute(model, x, "gradcam", target=3) -> Attribution(map=32x32 in [0, 1], raw, seconds, method, target)

The shared, cached model is never touched: each call works on a private deep copy (a few ms for a CIFAR
ResNet), so Captum's hooks (Grad-CAM's forward hook, guided backprop's ReLU backward hooks) can never leak
into another session's forward pass running in another thread, even if an attribution is interrupted.

Choices (measured timings are in the report that introduced this module):
- Integrated Gradients integrates from a baseline; "black" (pixel value 0, the baseline of Sundararajan et al.
  2017) is the default, "mean" is the average CIFAR-10 colour (zero in the network's normalised input space).
  Either one cannot credit pixels that already look like the baseline, which the UI says.
- SmoothGrad averages |gradient| over noisy copies; the noise is given as a fraction of the 0..1 pixel range
  (Smilkov et al. 2017 suggest 10-20 %) and converted to the normalised space the model reads.
- Grad-CAM looks at the last stage (model.layer3, 8x8 maps) and is upsampled bilinearly to 32x32.
- Occlusion slides a mean-coloured window (zero in normalised space) over the image; 8x8 with stride 4 gives
  7x7 = 49 forward passes, fine enough to tell the object from the background on a 32x32 image.
"""
from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import (
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)

from resnet_demo.data.images import upscale
from resnet_demo.nets.paper import IMAGE_SIZE, MEAN, STD

# Captum warns on every guided-backprop call that it sets (and later removes) ReLU hooks; we know, and we
# only ever hook a private copy of the model.
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations", category=UserWarning)

BASELINES = ("black", "mean")


@dataclass(frozen=True)
class Attribution:
    """One method's answer for one image: `map` is what to draw, `raw` is Captum's own output (C, H, W)."""

    map: np.ndarray  # (32, 32) float32 in [0, 1]
    raw: np.ndarray
    seconds: float
    method: str
    target: int


@dataclass(frozen=True)
class Method:
    key: str  # also the ?method= value in the URL
    label: str
    summary: str  # one sentence for the UI
    sign: str  # how the raw attribution becomes a map: "abs" (magnitude) or "positive" (evidence for the class)
    # the map is scaled so this percentile is 1 (below 100 keeps single hot pixels from washing out the rest)
    percentile: float


METHODS: dict[str, Method] = {m.key: m for m in (
    Method("saliency", "Saliency", "How much a tiny change of each pixel would change the class score (|gradient|).",
           "abs", 99.0),
    Method("ig", "Integrated Gradients",
           "Gradients summed along a straight path from a baseline image to this one; the credits add up to the "
           "change in the class score.", "positive", 99.0),
    Method("smoothgrad", "SmoothGrad", "Saliency averaged over noisy copies of the image, which removes much of "
           "the speckle.", "abs", 99.0),
    Method("gradcam", "Grad-CAM", "Which regions of the last stage's 8x8 feature maps support the class, "
           "upsampled to the image.", "positive", 100.0),
    Method("guided-gradcam", "Guided Grad-CAM", "Grad-CAM times guided backpropagation: fine pixel detail, but "
           "only inside the regions Grad-CAM picked.", "abs", 99.0),
    Method("occlusion", "Occlusion", "How much the class score drops when a grey 8x8 patch hides each part of "
           "the image (49 forward passes).", "positive", 100.0),
)}


def _baseline(x: torch.Tensor, baseline: str) -> torch.Tensor:
    if baseline == "mean":
        return torch.zeros_like(x)
    if baseline == "black":
        mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return ((0.0 - mean) / std).expand_as(x).clone()
    raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")


def _saliency(model, x, target, **_):
    return Saliency(model).attribute(x, target=target, abs=True)


def _ig(model, x, target, n_steps=32, baseline="black", **_):
    ig = IntegratedGradients(model)
    # internal_batch_size bounds memory: 16 ResNet-56 forward/backward passes at a time is ~0.2 GB.
    return ig.attribute(x, baselines=_baseline(x, baseline), target=target, n_steps=int(n_steps),
                        method="gausslegendre", internal_batch_size=16)


def _smoothgrad(model, x, target, nt_samples=16, noise=0.15, **_):
    stdev = float(noise) / float(np.mean(STD))  # a fraction of the 0..1 pixel range, in normalised units
    return NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=int(nt_samples),
                                                  nt_samples_batch_size=16, stdevs=stdev, target=target, abs=True)


def _gradcam(model, x, target, **_):
    cam = LayerGradCam(model, model.layer3).attribute(x, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(cam, (IMAGE_SIZE, IMAGE_SIZE), interpolate_mode="bilinear").clamp_min(0)


def _guided_gradcam(model, x, target, **_):
    return GuidedGradCam(model, model.layer3).attribute(x, target=target)


def _occlusion(model, x, target, window=8, stride=4, **_):
    w, s = int(window), int(stride)
    if not 1 <= w <= IMAGE_SIZE or not 1 <= s <= w:
        raise ValueError(f"occlusion window must be 1..{IMAGE_SIZE} pixels and the stride 1..window, got {w}/{s}")
    return Occlusion(model).attribute(x, sliding_window_shapes=(3, w, w), strides=(3, s, s), baselines=0.0,
                                      target=target, perturbations_per_eval=64)


_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "saliency": _saliency, "ig": _ig, "smoothgrad": _smoothgrad, "gradcam": _gradcam,
    "guided-gradcam": _guided_gradcam, "occlusion": _occlusion,
}


def to_map(raw: torch.Tensor | np.ndarray, method: str) -> np.ndarray:
    """(C, H, W) raw attribution -> (H, W) float32 in [0, 1]; all zeros when there is nothing to show."""
    m = METHODS[method]
    a = np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    a = np.abs(a).sum(axis=0) if m.sign == "abs" else np.clip(a.sum(axis=0), 0.0, None)
    positive = a[a > 0]
    scale = float(np.percentile(positive, m.percentile)) if positive.size else 0.0
    if not np.isfinite(scale) or scale <= 0:
        return np.zeros(a.shape, dtype=np.float32)
    return np.clip(a / scale, 0.0, 1.0).astype(np.float32)


def private_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy to hook and differentiate through, in eval mode like the original."""
    return copy.deepcopy(model).eval()


def attribute_inplace(model: torch.nn.Module, x: torch.Tensor, method: str, target: int, **options) -> Attribution:
    """attribute() on `model` itself: Captum adds hooks to it for the duration (tests check it removes them)."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if tuple(x.shape) != (1, 3, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected one normalised 3x{IMAGE_SIZE}x{IMAGE_SIZE} image, got shape {tuple(x.shape)}")
    target = int(target)
    device = next(model.parameters()).device
    x = x.detach().to(device=device, dtype=torch.float32).clone().requires_grad_(True)  # our own copy
    start = time.perf_counter()
    with torch.enable_grad():
        raw = _FUNCTIONS[method](model, x, target, **options)
    seconds = time.perf_counter() - start
    raw_np = raw.detach()[0].float().cpu().numpy()
    return Attribution(map=to_map(raw_np, method), raw=raw_np, seconds=seconds, method=method, target=target)


def attribute(model: torch.nn.Module, x: torch.Tensor, method: str, target: int, **options) -> Attribution:
    """Explain class `target` for one normalised image x (1, 3, 32, 32) with METHODS[method].

    Options: n_steps, baseline ("black" | "mean") for "ig"; nt_samples, noise for "smoothgrad"; window,
    stride for "occlusion". `seconds` times the attribution only, not the model copy.
    """
    return attribute_inplace(private_copy(model), x, method, target, **options)


# --- drawing (numpy only) -------------------------------------------------------------------------------

# A few stops of matplotlib's "inferno" (dark purple -> orange -> pale yellow): perceptually ordered and
# readable by most colour-blind viewers; interpolated to a 256-entry table.
_STOPS = np.array([
    [0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39],
    [252, 255, 164],
], dtype=np.float64)
COLORMAP = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_STOPS)), _STOPS[:, c])
                     for c in range(3)], axis=1).astype(np.uint8)


def colorize(heat: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 through COLORMAP."""
    idx = np.clip(np.nan_to_num(heat) * 255.0 + 0.5, 0, 255).astype(np.intp)
    return COLORMAP[idx]


def overlay(image: np.ndarray, heat: np.ndarray, opacity: float = 0.6, size: int = 256) -> np.ndarray:
    """Blend the coloured heatmap over a (32, 32, 3) uint8 image: opacity 0 shows the image, 1 the heatmap."""
    a = float(np.clip(opacity, 0.0, 1.0))
    blended = (1 - a) * np.asarray(image, dtype=np.float64) + a * colorize(heat).astype(np.float64)
    return upscale(np.clip(blended + 0.5, 0, 255).astype(np.uint8), size)
