"""Class names: what a network calls the things it tells apart, CIFAR-10's ten or a class's own.

A name comes from a person (a folder's name, a text box) and ends up in a model file's metadata, a chart's axis,
a file name and a message, so every name a network is given passes check_names first: two to MAX_CLASSES names,
each trimmed and in Unicode NFC form, none empty, over MAX_NAME_CHARS characters, holding a control or an
invisible formatting character or a path separator, or "." / "..", and no two the same once case is ignored.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from resnet_demo.nets.paper import CLASSES

MIN_CLASSES = 2
MAX_CLASSES = 50
MAX_NAME_CHARS = 40


class ClassNameError(ValueError):
    """A list of class names a network cannot be given; the message names the offending entry."""


def shown(name: object, limit: int = 48) -> str:
    """A name as a message may quote it: control characters escaped, a long one cut short."""
    text = str(name)
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return repr(cut)


def check_name(name: object) -> str:
    """One class name, trimmed and NFC-normalised; ClassNameError when it cannot be one."""
    if not isinstance(name, str):
        raise ClassNameError(f"a class name must be text, got {type(name).__name__}")
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        raise ClassNameError("a class name is empty")
    if len(clean) > MAX_NAME_CHARS:
        raise ClassNameError(f"the class name {shown(clean)} is {len(clean)} characters long; "
                             f"at most {MAX_NAME_CHARS} are allowed")
    if any(unicodedata.category(c).startswith("C") for c in clean):
        raise ClassNameError(f"the class name {shown(clean)} holds a control or invisible character")
    if "/" in clean or "\\" in clean:
        raise ClassNameError(f"the class name {shown(clean)} holds a path separator (/ or \\)")
    if clean in (".", ".."):
        raise ClassNameError(f"{shown(clean)} is not a class name")
    return clean


def check_names(names: Iterable[str]) -> tuple[str, ...]:
    """The names, each checked (check_name), as a tuple in the order given; ClassNameError for a bad list."""
    if isinstance(names, (str, bytes)):
        raise ClassNameError("expected a list of class names, got a single string")
    try:
        items = list(names)
    except TypeError:
        raise ClassNameError("expected a list of class names") from None
    if len(items) < MIN_CLASSES:
        raise ClassNameError(f"{len(items)} class{'' if len(items) == 1 else 'es'}: a network needs at least "
                             f"{MIN_CLASSES} to tell apart")
    if len(items) > MAX_CLASSES:
        raise ClassNameError(f"{len(items)} classes is more than the {MAX_CLASSES} allowed")
    clean = tuple(check_name(n) for n in items)
    seen: dict[str, str] = {}
    for name in clean:
        key = name.casefold()
        if key in seen:
            same = "twice" if seen[key] == name else f"and {shown(seen[key])} (the same name, ignoring case)"
            raise ClassNameError(f"the class name {shown(name)} appears {same}; every class needs its own name")
        seen[key] = name
    return clean


def is_cifar10(classes: Iterable[str]) -> bool:
    """Whether these are CIFAR-10's ten classes, in CIFAR-10's order (what the shipped test sets are labelled)."""
    return tuple(classes) == CLASSES
