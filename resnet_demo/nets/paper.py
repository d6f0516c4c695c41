"""The one source of truth for the facts this project reproduces or depends on.

He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv:1512.03385), Sec. 4.2.
Everything else (model, data, app, tests) imports these constants rather than restating them.
"""
from __future__ import annotations

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

# Per-channel statistics of the 50,000 CIFAR-10 training images on a 0..1 scale (measured on the genuine
# set; tests/test_realdata.py recomputes the mean). Training and inference both normalise with these.
MEAN: tuple[float, float, float] = (0.49139968, 0.48215841, 0.44653091)
STD: tuple[float, float, float] = (0.24703223, 0.24348513, 0.26158784)

IMAGE_SIZE = 32

# Depths the paper reports on CIFAR-10; any 6n+2 is accepted, these are the presets.
PRESET_DEPTHS: tuple[int, ...] = (20, 32, 44, 56, 110)

# Table 6: CIFAR-10 test error (%) of the residual nets (option A), and their parameter counts.
TABLE6_ERROR: dict[int, float] = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
TABLE6_PARAMS_M: dict[int, float] = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}

# A well-known public reproduction with the same architecture (akamaster/pytorch_resnet_cifar10, its README).
PUBLIC_REPRO_ERROR: dict[int, float] = {20: 8.27, 32: 7.37, 44: 6.90, 56: 6.61, 110: 6.32, 1202: 6.18}

# The shipped models Fig. 6's message needs (the figure itself draws every depth of both families).
FIG6_CORE: tuple[str, ...] = ("plain20", "plain56", "resnet20", "resnet56")

# Fig. 6 (left), read off the figure: plain nets get *worse* with depth, on training and on test error.
FIG6_NOTE = (
    "Fig. 6 (left) of the paper: the 56-layer plain net has higher training and test error than the "
    "20-layer one, while the 56-layer ResNet has lower error than ResNet-20."
)


def blocks_per_stage(depth: int) -> int:
    """n in depth = 6n + 2; refuses anything else with a message a user can act on."""
    if not isinstance(depth, int) or isinstance(depth, bool):
        raise ValueError(f"depth must be an integer, got {depth!r}")
    if depth < 8 or (depth - 2) % 6:
        below = max(8, depth - (depth - 2) % 6)
        hint = f"nearest valid depths: {below} or {below + 6}" if depth >= 8 else "the smallest is 8"
        raise ValueError(
            f"depth {depth} is not of the form 6n+2 (n >= 1) that the paper's CIFAR ResNets use; {hint}. "
            f"The paper's depths are {', '.join(map(str, PRESET_DEPTHS))} (and 1202)."
        )
    return (depth - 2) // 6
