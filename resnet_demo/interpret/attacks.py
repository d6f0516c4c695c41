"""Fooling a trained network: Captum's FGSM and PGD in pixel space, the smallest ε that flips an answer, and
accuracy under attack on the first N test images.

    x_adv = attack_pixels(model, x, reference, Settings("pgd", eps=2))      # x and x_adv in [0, 1]

The definition, exact so that anyone can measure the same numbers:
- The attack works on pixels in [0, 1] (uint8 / 255) *before* the normalisation: the network is wrapped as
  nn.Sequential(Normalize(MEAN, STD), model), in eval mode and float32. ε is given in units of 1/255 (ε = 4 means
  no pixel value changes by more than 4/255), everywhere: the CLI, the app and weights/robustness.json.
- The loss is the cross-entropy of the logits against one class, image by image (no label smoothing, no mean
  over the batch, so an image's attack does not depend on its batch).
- FGSM (Goodfellow et al. 2015): x' = clip01(x + ε sign(∇x loss)) against the class (untargeted) or
  x' = clip01(x - ε sign(∇x loss)) towards a target. A pixel whose gradient is exactly 0 is left unchanged
  (Captum's FGSM skips |gradient| <= 1e-6; it is set to 0 here, the textbook sign).
- PGD (Madry et al. 2018): no random start; `steps` FGSM steps of step_size = step_fraction * ε each, every step
  projected back into the L∞ ball of radius ε around x and clipped to [0, 1]. The default is 10 steps of ε/4.
- Accuracy under attack (robust_accuracy): the share of the first N test images, in the data set's order, whose
  attacked version (untargeted, against the true label) is still classified as the true label (argmax of the
  logits). Images the network already gets wrong count as wrong; 100 images a batch.

Captum never hooks the model here (it only differentiates through it), so the shared, cached model is used as is.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from captum.robust import FGSM, PGD, MinParamPerturbation
from torch import nn

from resnet_demo.nets.paper import CLASSES, IMAGE_SIZE, MEAN, STD

# Captum warns on every step that it set requires_grad on the (detached) input itself; that is what we want.
warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients", category=UserWarning)

ATTACKS = {"fgsm": "FGSM", "pgd": "PGD"}
EPS_MAX = 16  # in 1/255: 16/255 is 6 % of the range, already a visible change
MAX_STEPS = 100  # PGD steps the CLI accepts; the app caps lower (its pages are shared by a class)
DEFAULT_STEPS = 10
DEFAULT_STEP_FRACTION = 0.25  # PGD step size as a fraction of ε: 10 steps of ε/4 can cross the ball and back
BATCH = 100  # images a batch in robust_accuracy (the definition does not depend on it; the floating point barely)
PIXEL_LEVELS = 255.0


class AttackError(ValueError):
    """A setting that cannot be used (ε out of range, a step count, a class); the message says what is allowed."""


@dataclass(frozen=True)
class Settings:
    """One attack: `eps` in units of 1/255; `target` None for untargeted, else the class to make it say."""

    attack: str = "fgsm"
    eps: float = 4.0
    steps: int = DEFAULT_STEPS  # PGD only
    step_fraction: float = DEFAULT_STEP_FRACTION  # PGD only: each step moves a pixel by at most this * ε
    target: int | None = None

    def validate(self, max_steps: int = MAX_STEPS, eps_max: float = EPS_MAX) -> Settings:
        """The settings themselves, or an AttackError saying what is wrong; checks every field's type too, since
        values may come from a URL or a form."""
        if self.attack not in ATTACKS:
            raise AttackError(f"unknown attack {self.attack!r}; choose one of {', '.join(ATTACKS)}")
        if not _is_number(self.eps) or not 0 <= float(self.eps) <= eps_max:
            raise AttackError(f"ε must be a number from 0 to {eps_max:g} (in units of 1/255), got {self.eps!r}")
        if self.attack == "pgd":
            if not _is_int(self.steps) or not 1 <= self.steps <= max_steps:
                raise AttackError(f"PGD needs 1 to {max_steps} steps, got {self.steps!r}")
            if not _is_number(self.step_fraction) or not 0 < float(self.step_fraction) <= 1:
                raise AttackError(f"the PGD step size is a fraction of ε above 0 and at most 1, got "
                                  f"{self.step_fraction!r}")
        if self.target is not None and (not _is_int(self.target) or not 0 <= self.target < len(CLASSES)):
            raise AttackError(f"the target class must be one of 0..{len(CLASSES) - 1} ({', '.join(CLASSES)}), "
                              f"got {self.target!r}")
        return self

    def method(self) -> str:
        """"FGSM" or "PGD, 10 steps of ε/4"."""
        if self.attack == "pgd":
            return f"PGD, {self.steps} steps of {fraction_label(self.step_fraction)}"
        return ATTACKS[self.attack]

    def describe(self) -> str:
        """"FGSM, ε = 4/255" or "PGD, 10 steps of ε/4, ε = 4/255", plus the target when there is one."""
        text = f"{self.method()}, ε = {float(self.eps):g}/255"
        return text + (f", towards “{CLASSES[self.target]}”" if self.target is not None else "")

    def record(self) -> dict:
        """The settings as a JSON record (the PGD fields only for PGD)."""
        d = asdict(self)
        if self.attack != "pgd":
            d.pop("steps")
            d.pop("step_fraction")
        return d


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, (float, np.floating))) and bool(np.isfinite(v))


def fraction_label(f: float) -> str:
    """0.25 -> "ε/4", 0.3 -> "0.3ε"."""
    inv = 1.0 / float(f)
    return "ε" if f == 1 else f"ε/{round(inv)}" if abs(inv - round(inv)) < 1e-9 else f"{float(f):g}ε"


# --- the network in pixel space ----------------------------------------------------------------------------

class Normalize(nn.Module):
    """(x - mean) / std per channel: pixels in [0, 1] -> what the network was trained on."""

    def __init__(self, mean: Sequence[float] = MEAN, std: Sequence[float] = STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def pixel_model(model: nn.Module) -> nn.Module:
    """The network as a function of pixels in [0, 1]; shares `model`'s weights (nothing is copied)."""
    device = next(model.parameters()).device
    return nn.Sequential(Normalize().to(device), model).eval()


def to_pixels(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 32, 32, 3) or (32, 32, 3) uint8 -> (N, 3, 32, 32) float32 in [0, 1]."""
    a = torch.as_tensor(np.ascontiguousarray(images))
    if a.dim() == 3:
        a = a.unsqueeze(0)
    if a.dtype != torch.uint8 or tuple(a.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise AttackError(f"expected uint8 images of shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3), got "
                          f"{tuple(a.shape)} {a.dtype}")
    return a.permute(0, 3, 1, 2).float() / PIXEL_LEVELS


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """(1, 3, 32, 32) or (3, 32, 32) in [0, 1] -> (32, 32, 3) uint8, rounded: for display."""
    p = pixels.detach().float().cpu()
    p = p[0] if p.dim() == 4 else p
    return (p.clamp(0, 1) * PIXEL_LEVELS + 0.5).floor().to(torch.uint8).permute(1, 2, 0).numpy()


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, reduction="none")


def _counting(net: nn.Module, on_step: Callable[[], None] | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """`net` as a function that calls on_step() at every forward pass that keeps a gradient (one per attack step)."""
    if on_step is None:
        return net

    def forward(x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            on_step()
        return net(x)

    return forward


# --- the attacks -------------------------------------------------------------------------------------------

def attack_pixels(net: nn.Module, x: torch.Tensor, labels: torch.Tensor | int, settings: Settings,
                  on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """The attacked batch (same shape as x, in [0, 1], within ε of x in L∞), detached.

    `net` takes pixels (pixel_model); `labels`: for an untargeted attack the class to move away from (a test
    image's true label, or the network's own answer), ignored for a targeted one, which moves towards
    settings.target. on_step is called once per gradient step (PGD's progress)."""
    settings.validate()
    n = x.shape[0]
    if settings.target is not None:
        labels = torch.full((n,), settings.target, dtype=torch.long, device=x.device)
    labels = torch.as_tensor(labels, dtype=torch.long, device=x.device).reshape(-1).expand(n)
    x = x.detach().float()
    eps = float(settings.eps) / PIXEL_LEVELS
    targeted = settings.target is not None
    forward = _counting(net, on_step)
    with torch.enable_grad():
        if settings.attack == "fgsm":
            fgsm = FGSM(forward, _loss, lower_bound=0.0, upper_bound=1.0)
            fgsm.zero_thresh = 0.0  # sign(0) = 0: only an exactly flat pixel stays put
            out = fgsm.perturb(x, eps, labels, targeted=targeted)
        else:
            pgd = PGD(forward, _loss, lower_bound=0.0, upper_bound=1.0)
            pgd.fgsm.zero_thresh = 0.0
            out = pgd.perturb(x, radius=eps, step_size=eps * float(settings.step_fraction),
                              step_num=int(settings.steps), target=labels, targeted=targeted, random_start=False)
    return out.detach()


@dataclass(frozen=True)
class Fooled:
    """One image attacked: the pixels and the logits before and after (and the probabilities), and what it took."""

    original: torch.Tensor  # (1, 3, 32, 32) in [0, 1]
    adversarial: torch.Tensor
    logits_before: torch.Tensor  # (10,)
    logits_after: torch.Tensor
    reference: int  # the class an untargeted attack moved away from
    settings: Settings
    seconds: float

    @property
    def probs_before(self) -> torch.Tensor:
        return F.softmax(self.logits_before.float(), dim=0)

    @property
    def probs_after(self) -> torch.Tensor:
        return F.softmax(self.logits_after.float(), dim=0)

    @property
    def perturbation(self) -> torch.Tensor:
        return self.adversarial - self.original

    @property
    def linf(self) -> float:
        """The largest change of any pixel value, in units of 1/255."""
        return float(self.perturbation.abs().max()) * PIXEL_LEVELS

    @property
    def before(self) -> int:
        return int(self.probs_before.argmax())

    @property
    def after(self) -> int:
        return int(self.probs_after.argmax())

    @property
    def succeeded(self) -> bool:
        """Untargeted: the answer is no longer the reference class; targeted: the answer is the target."""
        t = self.settings.target
        return self.after == t if t is not None else self.after != self.reference


@torch.no_grad()
def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net(x).float()


def scores(model: nn.Module, images: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """The logits (N, 10) of (N, 32, 32, 3) uint8 images: where they sit in the classifier's space."""
    net = pixel_model(model)
    device = next(model.parameters()).device
    out = [_logits(net, to_pixels(images[i:i + batch_size]).to(device)).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, len(CLASSES)), np.float32)


def fool(model: nn.Module, image: np.ndarray, settings: Settings, reference: int | None = None,
         on_step: Callable[[], None] | None = None) -> Fooled:
    """Attack one (32, 32, 3) uint8 image. Untargeted attacks move away from `reference`, by default the
    network's own answer for the image (so an upload, with no true label, can be attacked too)."""
    settings.validate()
    net = pixel_model(model)
    x = to_pixels(image).to(next(model.parameters()).device)
    before = _logits(net, x)[0]
    reference = int(before.argmax()) if reference is None else int(reference)
    start = time.perf_counter()
    adv = attack_pixels(net, x, reference, settings, on_step)
    seconds = time.perf_counter() - start
    return Fooled(x.cpu(), adv.cpu(), before.cpu(), _logits(net, adv)[0].cpu(), reference, settings, seconds)


def smallest_eps(model: nn.Module, image: np.ndarray, settings: Settings, reference: int | None = None,
                 eps_max: int = EPS_MAX, on_try: Callable[[int], None] | None = None) -> int | None:
    """The smallest whole ε (1/255 units, 1..eps_max) at which `settings`' attack (its ε ignored) changes the
    answer away from `reference` (by default the network's own answer), or makes it say settings.target; None
    when none up to eps_max does. Captum's MinParamPerturbation, linear search: every ε is tried in turn, so no
    assumption that a larger ε fools whenever a smaller one does. on_try(ε) is called before each try."""
    settings.validate()
    if not _is_int(eps_max) or not 1 <= eps_max <= EPS_MAX:
        raise AttackError(f"the search goes up to an ε of 1 to {EPS_MAX}, got {eps_max!r}")
    net = pixel_model(model)
    x = to_pixels(image).to(next(model.parameters()).device)
    reference = int(_logits(net, x)[0].argmax()) if reference is None else int(reference)
    target = settings.target

    def attack(inputs: torch.Tensor, eps: int) -> torch.Tensor:
        if on_try is not None:
            on_try(int(eps))
        return attack_pixels(net, inputs, reference, Settings(settings.attack, float(eps), settings.steps,
                                                              settings.step_fraction, target))

    def still_correct(out: torch.Tensor) -> bool:  # "correct" to Captum means: not fooled yet
        answer = int(out.argmax(dim=1)[0])
        return answer != target if target is not None else answer == reference

    search = MinParamPerturbation(net, attack, "eps", arg_min=1, arg_max=eps_max + 1, arg_step=1, mode="linear",
                                  correct_fn=still_correct)
    with torch.no_grad():
        _, found = search.evaluate(x, perturbations_per_eval=1)
    return None if found is None else int(found)


# --- accuracy under attack ---------------------------------------------------------------------------------

def robust_accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, settings: Settings,
                    batch_size: int = BATCH, on_batch: Callable[[int], None] | None = None) -> dict:
    """Accuracy of `model` on `images` (N, 32, 32, 3 uint8, in the order given) after the untargeted attack
    `settings` against each image's label: {"correct", "images", "accuracy", "seconds"}. on_batch(n) after
    each batch of n images."""
    settings.validate()
    if settings.target is not None:
        raise AttackError("accuracy under attack is measured with untargeted attacks (against the true label)")
    if len(images) != len(labels) or not len(images):
        raise AttackError(f"need as many labels as images, and at least one image; got {len(images)} and "
                          f"{len(labels)}")
    net = pixel_model(model)
    device = next(model.parameters()).device
    correct, start = 0, time.perf_counter()
    for i in range(0, len(images), batch_size):
        x = to_pixels(images[i:i + batch_size]).to(device)
        y = torch.as_tensor(np.asarray(labels[i:i + batch_size]), dtype=torch.long, device=device)
        adv = attack_pixels(net, x, y, settings) if settings.eps > 0 else x
        with torch.no_grad():
            correct += int((net(adv).argmax(dim=1) == y).sum())
        if on_batch is not None:
            on_batch(len(y))
    return {"correct": correct, "images": len(images), "accuracy": correct / len(images),
            "seconds": round(time.perf_counter() - start, 2)}


def amplified(perturbation: torch.Tensor, eps: float) -> tuple[np.ndarray, float]:
    """(the perturbation as a (32, 32, 3) uint8 picture, the factor it was multiplied by): mid-grey is no change,
    black and white are -ε and +ε. For ε = 0 the picture is all grey and the factor 1."""
    p = perturbation.detach().float().cpu()
    p = p[0] if p.dim() == 4 else p
    factor = 0.5 * PIXEL_LEVELS / float(eps) if eps > 0 else 1.0
    return to_uint8(0.5 + p * factor), factor
