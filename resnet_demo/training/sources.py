"""Which CIFAR-10 a run uses: the full set when it is found, else the built-in subset when the run fits it, else
a message that says how to get the full set. The CLI and the Train page show the same sentence before a run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from resnet_demo.data import builtin as builtin_data
from resnet_demo.data.cifar import Cifar10, DataError, Split, find_cifar10, how_to_get, load_cifar10, offline
from resnet_demo.data.download import load_or_download
from resnet_demo.training.recipes import RECIPES

FULL = "full"
BUILTIN = "builtin"
MISSING = "missing"


@dataclass(frozen=True)
class Plan:
    kind: str           # FULL | BUILTIN | MISSING
    message: str        # what to tell a person before the run ("" with the full set)
    train_images: int | None  # in the built-in set (before any --subset); None: not read yet (full) or none (missing)
    test_images: int | None


def fits_builtin(preset: str, subset: int | None, builtin_train: int) -> bool:
    """A run may train on the built-in subset when its preset is meant for it (classroom) or when it asks for no
    more training images than the subset holds."""
    if subset is not None:
        return subset <= builtin_train
    return RECIPES[preset].builtin_fallback if preset in RECIPES else False


def builtin_note(train: int, test: int) -> str:
    return (f"No full CIFAR-10 found; training on the built-in {train:,}-image subset (tested on its {test:,} "
            f"test images). For the full 50,000, run `python -m resnet_demo download`.")


def plan(data_dir: str | os.PathLike | None = None, preset: str = "classroom", subset: int | None = None) -> Plan:
    """What a run with these settings would train on; reads no images."""
    if find_cifar10(data_dir) is not None:
        return Plan(FULL, "", None, None)
    info = builtin_data.info()
    if info is not None and fits_builtin(preset, subset, info["train_images"]):
        return Plan(BUILTIN, builtin_note(info["train_images"], info["test_images"]), info["train_images"],
                    info["test_images"])
    return Plan(MISSING, missing_message(data_dir, preset, subset, info), None, None)


def missing_message(data_dir, preset: str, subset: int | None, info: dict | None) -> str:
    if info is None:
        return how_to_get(data_dir)
    asks = f"{subset:,} training images" if subset is not None else f"the {preset} preset on all 50,000 images"
    return (f"{how_to_get(data_dir)} This run ({asks}) needs it: without it, the classroom preset, or any run on at "
            f"most {info['train_images']:,} training images, uses the built-in subset.")


def load_for_training(data_dir: str | os.PathLike | None, preset: str, subset: int | None,
                      download: bool | None = None) -> Cifar10:
    """The full set if found; else the built-in subset if the run fits it; else the full set downloaded (when
    allowed and online), or a DataError that says how to get it."""
    if find_cifar10(data_dir) is None:
        info = builtin_data.info()
        if info is not None and fits_builtin(preset, subset, info["train_images"]):
            return builtin_data.load()
        if download is None:
            download = not offline()
        if not download:
            raise DataError(missing_message(data_dir, preset, subset, info))
    return load_or_download(data_dir, download)


def data_record(data: Cifar10) -> dict:
    """Which data a run used, for its config.json and metrics.json."""
    return {"kind": BUILTIN if data.source == builtin_data.SOURCE else FULL, "source": data.source,
            "train_images": len(data.train), "test_images": len(data.test)}


def load_test_set(data_dir: str | os.PathLike | None = None) -> tuple[Split, str]:
    """(the test split, a note) for evaluating a model: the full 10,000 when found, else the built-in test subset,
    with a note that says so. Never downloads."""
    if find_cifar10(data_dir) is not None:
        return load_cifar10(data_dir).test, ""
    if builtin_data.info() is None:
        raise DataError(how_to_get(data_dir))
    test = builtin_data.load().test
    return test, (f"evaluated on the built-in {len(test):,}-image test subset, not the full 10,000: no full CIFAR-10 "
                  f"was found (`python -m resnet_demo download` gets it)")
