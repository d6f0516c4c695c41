"""Training recipes ("presets"): optimiser settings and the learning-rate schedule as a pure function of the step.

A schedule that depends only on (step, total_steps) makes resuming trivial: there is no scheduler state.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int
    batch_size: int          # global batch (all ranks together)
    lr: float                # base (paper) or peak (one-cycle) learning rate
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    schedule: str = "paper"  # "paper": step decay at 50% and 75% of training; "onecycle": linear warm-up, cosine down
    warmup: float = 0.0      # one-cycle: fraction of the steps spent warming up
    description: str = ""   # holds for any --epochs: the length lives in `epochs`, which runs may override
    same_work: bool = False  # `epochs` counts passes over the full set; a smaller set gets proportionally more
    builtin_fallback: bool = False  # without the full set, train on the built-in subset (sources.py)

    def lr_at(self, step: int, total_steps: int) -> float:
        if self.schedule == "paper":
            # 32k and 48k of 64k iterations in the paper: the same fractions of whatever length we train.
            frac = step / max(1, total_steps)
            return self.lr * (0.1 ** ((frac >= 0.5) + (frac >= 0.75)))
        warm = max(1, int(self.warmup * total_steps))
        if step < warm:
            return self.lr * (0.1 + 0.9 * step / warm)
        t = (step - warm) / max(1, total_steps - warm)
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    def epochs_for(self, train_images: int) -> int:
        """The default length on a set of this size: with same_work, the same number of training steps whatever
        the size (classroom: 3 epochs of the full 50,000 images, 30 of the built-in 5,000)."""
        if not self.same_work:
            return self.epochs
        return max(1, round(self.epochs * FULL_TRAIN_IMAGES / max(1, train_images)))

    def to_dict(self) -> dict:
        return asdict(self)


FULL_TRAIN_IMAGES = 50_000
PAPER_ITERATIONS = 64_000  # at batch 128: 164 epochs of 50,000 images

RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        "paper", epochs=164, batch_size=128, lr=0.1, weight_decay=1e-4,
        description="He et al. Sec. 4.2: SGD momentum 0.9, wd 1e-4, lr 0.1, batch 128, lr/10 at half and three "
                    "quarters of training (32k and 48k of 64k iterations at the default length; depth 110: "
                    "lr 0.01 until train error < 80%).",
    ),
    "fast": Recipe(
        "fast", epochs=40, batch_size=256, lr=0.2, nesterov=True, weight_decay=5e-4, label_smoothing=0.1,
        schedule="onecycle", warmup=0.15,
        description="A modern short schedule: Nesterov SGD, wd 5e-4, label smoothing 0.1, "
                    "linear warm-up then cosine decay; batch 512 on CUDA.",
    ),
    "classroom": Recipe(
        "classroom", epochs=3, batch_size=128, lr=0.15, nesterov=True, weight_decay=5e-4, label_smoothing=0.1,
        schedule="onecycle", warmup=0.2,
        same_work=True, builtin_fallback=True,
        description="Real learning within minutes on a laptop CPU: one-cycle SGD for as many steps as a few passes "
                    "over the full set take, whatever the number of training images (more epochs on fewer); "
                    "without the full set it trains on the built-in subset.",
    ),
}

# On a GPU the fast preset doubles the batch (and the peak lr with it) to fill the device.
CUDA_BATCH_SCALE = {"fast": 2}


def get_recipe(name: str, device_type: str = "cpu", epochs: int | None = None, batch_size: int | None = None,
               lr: float | None = None, train_images: int | None = None) -> Recipe:
    """The preset with a run's overrides; `train_images` (the set it trains on) sets the default length."""
    if name not in RECIPES:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(RECIPES)}")
    r = RECIPES[name]
    scale = CUDA_BATCH_SCALE.get(name, 1) if device_type == "cuda" else 1
    if scale != 1:
        r = replace(r, batch_size=r.batch_size * scale, lr=r.lr * scale)
    if batch_size is not None and batch_size != r.batch_size:
        r = replace(r, lr=r.lr * batch_size / r.batch_size, batch_size=batch_size)  # linear scaling rule
    if epochs is not None:
        if epochs < 1:
            raise ValueError("epochs must be at least 1")
        r = replace(r, epochs=epochs)
    elif train_images is not None:
        r = replace(r, epochs=r.epochs_for(train_images))
    if lr is not None:
        r = replace(r, lr=lr)
    return r


# Depth 110 in the paper: "we use 0.01 to warm up the training until the training error is below 80%
# (about 400 iterations), and then go back to 0.1".
WARMUP_110 = {"min_depth": 110, "lr": 0.01, "until_train_error": 0.80}
