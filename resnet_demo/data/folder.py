"""A folder of labelled images to teach a network from: one subfolder per class, named after the class
(torchvision's ImageFolder layout), read into the 32x32 images a network sees (and thumbnails, if asked).

What a person may have put there is handled, and said, rather than fatal where it can be: files that are not
images are skipped and counted, a class with more than `max_per_class` files gives only its first (by name),
hidden entries (".DS_Store", ".ipynb_checkpoints", "__MACOSX") are ignored, loose files beside the class
folders are ignored and counted. What cannot be taught is refused with one message: fewer than two classes, a
class without a single image, a folder name that cannot be a class name (nets/classes.py).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resnet_demo.data.cifar import DataError, Split
from resnet_demo.data.images import ImageError, load_small
from resnet_demo.nets.classes import ClassNameError, check_name, check_names, shown

MAX_PER_CLASS = 500  # images read per class; the rest of a bigger folder is left out, and the notes say so
SHOW_FILES = 3  # file names quoted in a note


class ImageSetError(DataError):
    """The folder cannot be taught from; the message says why and what to change."""


@dataclass
class LabelledImages:
    """Images and their classes, read from a folder. `files[i]`: image i's path relative to the folder;
    `notes`: one sentence for each thing skipped or capped."""

    split: Split
    files: list[str]
    thumbnails: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _class_files(folder: Path) -> list[Path]:
    """Every file under a class folder (subfolders too, links to folders not followed), sorted by path."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        found += [Path(top) / f for f in files if not _hidden(f)]
    return sorted(found)


def list_image_folder(root: str | os.PathLike) -> tuple[dict[str, list[Path]], list[str]]:
    """({class name: its files}, notes) of a folder with one subfolder per class, in the order of the names
    (sorted, as torchvision's ImageFolder numbers them). ImageSetError for what cannot be a set of classes."""
    root = Path(root)
    if not root.is_dir():
        raise ImageSetError(f"{root} is not a folder: give a folder with one subfolder of images per class")
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise ImageSetError(f"cannot read the folder {root}: {e.strerror or e}") from None
    folders = [e for e in entries if e.is_dir() and not _hidden(e.name)]
    loose = [e for e in entries if not e.is_dir() and not _hidden(e.name)]
    notes = [f"{len(loose)} file{'s' if len(loose) != 1 else ''} beside the class folders ignored (each class's "
             f"images go in the subfolder named after it)"] if loose else []
    names = []
    for e in folders:
        try:
            names.append(check_name(e.name))
        except ClassNameError as err:
            raise ImageSetError(f"the folder {shown(e.name)} cannot be a class: {err}") from None
    if len(folders) < 2:
        found = f"only one, {shown(folders[0].name)}" if folders else "none"
        raise ImageSetError(f"{root} needs a subfolder of images for each class, at least two; it has {found}")
    try:
        check_names(names)
    except ClassNameError as err:
        raise ImageSetError(f"the class folders in {root}: {err}") from None
    return {name: _class_files(Path(e.path)) for name, e in zip(names, folders, strict=True)}, notes


def read_image_folder(root: str | os.PathLike, max_per_class: int = MAX_PER_CLASS, thumb_side: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> LabelledImages:
    """The folder's images as a Split (labels in the order of the sorted class names), with notes on what was
    left out. `progress(done, total)` is called after each file."""
    root = Path(root)
    listing, notes = list_image_folder(root)
    capped = {}
    for name, files in listing.items():
        if len(files) > max_per_class:
            notes.append(f"class {name!r}: {len(files):,} files, only the first {max_per_class:,} by name are used "
                         f"(the limit per class)")
        capped[name] = files[:max_per_class]
    total, done = sum(map(len, capped.values())), 0
    images, thumbs, labels, rel, skipped = [], [], [], [], []
    for label, (name, files) in enumerate(capped.items()):
        kept = 0
        for path in files:
            shown_path = path.relative_to(root).as_posix()
            try:
                small, thumb = load_small(path, shown_path, thumb_side)
            except ImageError:
                skipped.append(shown_path)
            else:
                images.append(small)
                thumbs.append(thumb)
                labels.append(label)
                rel.append(shown_path)
                kept += 1
            done += 1
            if progress is not None:
                progress(done, total)
        if not kept:
            why = (f": its {len(files)} file{'s are' if len(files) != 1 else ' is'} not images "
                   f"({_few(skipped[-len(files):])})" if files else "")
            raise ImageSetError(f"class {name!r} has no images{why}")
    if skipped:
        notes.append(f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''} that "
                     f"{'are' if len(skipped) != 1 else 'is'} not an image or damaged: {_few(skipped)}")
    split = Split(np.stack(images), np.asarray(labels, np.int64), tuple(capped))
    return LabelledImages(split, rel, np.stack(thumbs) if thumb_side else None, notes)


def _few(paths: list[str]) -> str:
    """A few file names as a message quotes them (control characters escaped), and how many more."""
    more = f" and {len(paths) - SHOW_FILES} more" if len(paths) > SHOW_FILES else ""
    return ", ".join(shown(p, 60) for p in paths[:SHOW_FILES]) + more
