"""The CIFAR-10 ResNets of He et al. 2015, Sec. 4.2, and their plain (shortcut-free) twins.

A 3x3 conv stem with 16 filters, three stages of n basic blocks on 32/16/8 maps with 16/32/64 filters,
global average pooling and a linear layer with one output per class (CIFAR-10's ten unless the network was
taught others, see classes.py): 6n+2 weighted layers.

Every ReLU is its own non-inplace module and no module runs twice in a forward pass, so Captum's
hook-based methods (GuidedBackprop, GuidedGradCam) see each activation exactly once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from resnet_demo.base.seeding import drawing
from resnet_demo.nets.classes import check_names
from resnet_demo.nets.paper import CLASSES, blocks_per_stage

STAGE_WIDTHS = (16, 32, 64)


@dataclass(frozen=True)
class Arch:
    """Everything needed to rebuild a network; stored beside every set of weights."""

    depth: int = 20
    plain: bool = False
    shortcut: str = "A"  # "A": zero-padded identity (the paper's CIFAR choice); "B": 1x1 projection + BN

    def __post_init__(self):
        blocks_per_stage(self.depth)  # validates
        if self.shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {self.shortcut!r}")

    @property
    def name(self) -> str:
        base = f"plain{self.depth}" if self.plain else f"resnet{self.depth}"
        return base if self.plain or self.shortcut == "A" else f"{base}-B"

    @property
    def label(self) -> str:
        kind = "Plain" if self.plain else "ResNet"
        return f"{kind}-{self.depth}" + ("" if self.plain or self.shortcut == "A" else " (option B)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Arch:
        return cls(depth=int(d["depth"]), plain=bool(d.get("plain", False)), shortcut=str(d.get("shortcut", "A")))


class PadShortcut(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels. No parameters, as in the paper."""

    def __init__(self, in_planes: int, planes: int):
        super().__init__()
        self.extra = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


def projection_shortcut(in_planes: int, planes: int, stride: int) -> nn.Sequential:
    """Option B: a 1x1 strided convolution with BN where the shape changes."""
    return nn.Sequential(
        nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(planes),
    )


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the shortcut (if any), then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.residual = residual
        self.shortcut: nn.Module | None = None
        if residual and (stride != 1 or in_planes != planes):
            self.shortcut = PadShortcut(in_planes, planes) if shortcut == "A" else projection_shortcut(
                in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.relu2(out)


class CifarResNet(nn.Module):
    """`classes`: the names of the outputs, in order (checked by classes.check_names); CIFAR-10's by default."""

    def __init__(self, arch: Arch, classes: Sequence[str] | None = None):
        super().__init__()
        with drawing():  # its draws come in one piece, never interleaved with a seeded block elsewhere
            self.arch = arch
            self.classes: tuple[str, ...] = CLASSES if classes is None else check_names(classes)
            n = blocks_per_stage(arch.depth)
            self.conv1 = nn.Conv2d(3, STAGE_WIDTHS[0], 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
            self.relu = nn.ReLU()
            in_planes = STAGE_WIDTHS[0]
            stages = []
            for i, planes in enumerate(STAGE_WIDTHS):
                blocks = []
                for j in range(n):
                    stride = 2 if i > 0 and j == 0 else 1
                    blocks.append(BasicBlock(in_planes, planes, stride, residual=not arch.plain,
                                             shortcut=arch.shortcut))
                    in_planes = planes
                stages.append(nn.Sequential(*blocks))
            self.layer1, self.layer2, self.layer3 = stages
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(in_planes, len(self.classes))
            self._init_weights()

    def _init_weights(self) -> None:
        # He et al. initialise with the method of their ref. [13] ("He/Kaiming" normal, fan_out for convs).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=5 ** 0.5)  # torch's default, kept explicit
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's 8x8 maps: what Grad-CAM looks at."""
        return self.layer3(self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def build_model(depth: int = 20, plain: bool = False, shortcut: str = "A",
                classes: Sequence[str] | None = None) -> CifarResNet:
    return CifarResNet(Arch(depth=depth, plain=plain, shortcut=shortcut), classes)


def classes_of(model: nn.Module) -> tuple[str, ...]:
    """The class names of a network's outputs (through DDP/compile wrappers); CIFAR-10's for a bare module."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return getattr(model, "classes", CLASSES)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates of one 32x32 image through convs and the linear layer (BN/ReLU/adds excluded)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() * k

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, 32, 32, device=next(model.parameters()).device))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return total


def describe(arch: Arch) -> dict:
    """Parameters, MACs and layer counts: what `info` prints and the Paper page draws."""
    model = CifarResNet(arch)
    n = blocks_per_stage(arch.depth)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    projections = sum(1 for m in convs if m.kernel_size == (1, 1))
    return {
        "name": arch.name,
        "label": arch.label,
        **arch.to_dict(),
        "blocks_per_stage": n,
        "stages": [
            {"stage": i + 1, "blocks": n, "filters": w, "output_size": 32 >> i} for i, w in enumerate(STAGE_WIDTHS)
        ],
        "params": count_params(model),
        "macs": count_macs(model),
        "weighted_layers": len(convs) - projections + 1,  # 6n+2: the paper's count excludes projections
        "conv_layers": len(convs),
        "projection_convs": projections,
        "fc_layers": 1,
        "relu_modules": sum(1 for m in model.modules() if isinstance(m, nn.ReLU)),
        "shortcuts": 0 if arch.plain else 3 * n,
    }
