"""A tab's work on the Teach page: the classes it names, each class's example images, and what was taught from
them. All of it lives in the tab's session state and nowhere else, so it goes when the tab goes.

An example is kept small: the 32x32 image the network learns from (3 KB) and a 64x64 thumbnail for people to see
(12 KB); the photo itself is let go as soon as it is decoded. A tab holds at most MAX_CLASSES classes of at most
MAX_PER_CLASS images each (about 5 MB in all). The same picture is never kept twice in a tab: it could land
among the images trained on and among those held out, and make the held-out score look better than it is.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

import numpy as np

from resnet_demo.base.storage import sha256_bytes
from resnet_demo.data.cifar import Split
from resnet_demo.data.images import THUMB_SIDE
from resnet_demo.nets.classes import ClassNameError, check_names
from resnet_demo.nets.model import CifarResNet
from resnet_demo.server.teach_queue import Ticket
from resnet_demo.store.project import Project, ProjectError
from resnet_demo.store.registry import ModelEntry, classes_label
from resnet_demo.store.weights import model_bytes
from resnet_demo.training.teach import TeachResult, result_bytes

from .plain import plain
from .state import TAUGHT

MIN_CLASSES, MAX_CLASSES = 2, 6
MIN_PER_CLASS = 5  # 4 to learn from and 1 held out to test on, at the page's held-out fraction of 1/5
GOOD_PER_CLASS = 20  # what the lesson suggests: 20 photos a class teach a network far better than 5
MAX_PER_CLASS = 60
MAX_IMAGES = MAX_CLASSES * MAX_PER_CLASS
RUN_TAGS = ("taught", "trained", "scratch")


def _id() -> str:
    return secrets.token_hex(4)


@dataclass(eq=False)
class Example:
    small: np.ndarray  # (32, 32, 3) uint8: what the network learns from
    thumb: np.ndarray  # (THUMB_SIDE, THUMB_SIDE, 3) uint8: what a person sees
    id: str = field(default_factory=_id)

    @property
    def digest(self) -> str:
        return hashlib.sha1(np.ascontiguousarray(self.small).tobytes()).hexdigest()


@dataclass(eq=False)
class Group:
    """One class: its name as typed, and its examples."""

    name: str = ""
    examples: list[Example] = field(default_factory=list)
    id: str = field(default_factory=_id)


@dataclass(eq=False)
class TaughtModel:
    """A network taught in this tab, with its registry entry (for every page's model picker) and its record."""

    entry: ModelEntry
    model: CifarResNet
    tag: str  # "taught", "trained" or "scratch"
    data_bytes: bytes  # the model file's bytes (weights.model_bytes): for a project and its sha256

    @property
    def record(self) -> dict:
        return self.entry.record


@dataclass(eq=False)
class Taught:
    """What the last fine-tune of this tab gave: one model, or two for a comparison ("trained" first)."""

    classes: tuple[str, ...]
    models: list[TaughtModel]
    held_images: np.ndarray  # (k, 32, 32, 3): the held-out images, to show which it got wrong
    held_labels: np.ndarray
    held_pred: dict[str, np.ndarray]  # by tag: the network's answer for each held-out image

    @property
    def main(self) -> TaughtModel:
        return self.models[0]


@dataclass(eq=False)
class Lesson:
    groups: list[Group] = field(default_factory=lambda: [Group(), Group()])
    taught: Taught | None = None
    ticket: Ticket | None = None  # the fine-tune asked for, until its results are taken in
    asked: Split | None = None  # the images it was asked for (the queue lets go of its copy when it ends)
    note: str | None = None  # how the last fine-tune ended, when not as planned
    id: str = field(default_factory=_id)

    # ------------------------------------------------------------------ classes and images

    def names(self) -> list[str]:
        return [g.name for g in self.groups]

    def count(self) -> int:
        return sum(len(g.examples) for g in self.groups)

    def group(self, group_id: str) -> Group | None:
        return next((g for g in self.groups if g.id == group_id), None)

    def add_group(self) -> None:
        if len(self.groups) < MAX_CLASSES:
            self.groups.append(Group())

    def remove_group(self, group_id: str) -> None:
        if len(self.groups) > MIN_CLASSES:
            self.groups = [g for g in self.groups if g.id != group_id]

    def add(self, group_id: str, small: np.ndarray, thumb: np.ndarray, what: str) -> str | None:
        """Add one image to a class; None, or why it was not added (a sentence naming `what`)."""
        group = self.group(group_id)
        if group is None:
            return f"{what}: that class was removed"
        if len(group.examples) >= MAX_PER_CLASS:
            return f"{what}: a class holds at most {MAX_PER_CLASS} images here, so it was not added"
        example = Example(np.ascontiguousarray(small, np.uint8), np.ascontiguousarray(thumb, np.uint8))
        for other in self.groups:
            if any(e.digest == example.digest for e in other.examples):
                where = "this class" if other is group else f"the class {plain(other.name) or 'without a name'}"
                return f"{what} is already in {where}, so it was not added again"
        group.examples.append(example)
        return None

    def remove(self, group_id: str, example_id: str) -> None:
        group = self.group(group_id)
        if group is not None:
            group.examples = [e for e in group.examples if e.id != example_id]

    def problems(self) -> list[str]:
        """Why these classes cannot be taught yet, each in a sentence (none: Train may start)."""
        out = []
        if any(not n.strip() for n in self.names()):
            out.append("Give every class a name.")
        else:
            try:
                check_names(self.names())
            except ClassNameError as e:
                out.append(f"Class names: {e}.")
        short = [plain(g.name) or f"class {i}" for i, g in enumerate(self.groups, start=1)
                 if len(g.examples) < MIN_PER_CLASS]
        if short:
            which = ", ".join(short)
            out.append(f"Each class needs at least {MIN_PER_CLASS} images: some are held out to test the network "
                       f"on pictures it never learned from, and it must have the rest to learn from. Still short: "
                       f"{which}.")
        return out

    def split(self) -> Split:
        """The images and their classes, as a teach takes them (names checked: ClassNameError)."""
        classes = check_names(self.names())
        images = [e.small for g in self.groups for e in g.examples]
        labels = [i for i, g in enumerate(self.groups) for _ in g.examples]
        stack = np.stack(images) if images else np.zeros((0, 32, 32, 3), np.uint8)
        return Split(stack, np.asarray(labels, np.int64), classes)

    def nbytes(self) -> int:
        """The bytes the images and models of this tab hold."""
        images = sum(e.small.nbytes + e.thumb.nbytes for g in self.groups for e in g.examples)
        models = 0 if self.taught is None else sum(
            len(m.data_bytes) + sum(p.numel() * p.element_size() for p in m.model.state_dict().values())
            for m in self.taught.models)
        return images + models

    # ------------------------------------------------------------------ the project file

    def project(self) -> tuple[Project, str | None]:
        """(the project to save, a note when the taught model is left out because it knows other names)."""
        data = self.split()
        thumbs = np.stack([e.thumb for g in self.groups for e in g.examples]) if len(data) else None
        project = Project(data.classes, data.images, data.labels, thumbs)
        note = None
        if self.taught is not None:
            if self.taught.classes == data.classes:
                main = self.taught.main
                project.model, project.record = main.data_bytes, _project_record(self.taught)
            else:
                note = ("The model was taught other class names than these, so the project keeps the images and "
                        "names only; teach again to keep a model with them.")
        return project, note


def _project_record(taught: Taught) -> dict:
    record = dict(taught.main.record)
    others = {m.tag: m.record.get("holdout_accuracy") for m in taught.models[1:]}
    if others:
        record["compared"] = others
    return record


def from_project(project: Project) -> Lesson:
    """A lesson from an opened project file (ProjectError when the page cannot hold it)."""
    if not MIN_CLASSES <= len(project.classes) <= MAX_CLASSES:
        raise ProjectError(f"the project has {len(project.classes)} classes; this page works with {MIN_CLASSES} to "
                           f"{MAX_CLASSES} (the command line takes more: python -m resnet_demo teach)")
    counts = np.bincount(project.labels, minlength=len(project.classes))
    if counts.max(initial=0) > MAX_PER_CLASS:
        raise ProjectError(f"the project holds {counts.max()} images of one class; this page keeps at most "
                           f"{MAX_PER_CLASS} a class")
    thumbs = project.thumbnails if project.thumbnails is not None else _upscaled(project.images)
    groups = [Group(name) for name in project.classes]
    for small, thumb, label in zip(project.images, thumbs, project.labels, strict=True):
        groups[int(label)].examples.append(Example(small, _fit(thumb)))
    lesson = Lesson(groups)
    model = project.load_model()
    if model is not None:
        lesson.taught = _opened(project, model)
    return lesson


def _upscaled(images: np.ndarray) -> np.ndarray:
    f = THUMB_SIDE // 32
    return np.repeat(np.repeat(images, f, axis=1), f, axis=2)


def _fit(thumb: np.ndarray) -> np.ndarray:
    """A thumbnail of another size, brought to THUMB_SIDE (nearest neighbour: it is only for people to see)."""
    if thumb.shape[0] == THUMB_SIDE:
        return np.ascontiguousarray(thumb)
    idx = np.arange(THUMB_SIDE) * thumb.shape[0] // THUMB_SIDE
    return np.ascontiguousarray(thumb[idx][:, idx])


def _opened(project: Project, model: CifarResNet) -> Taught:
    record = dict(project.record or {})
    record["classes"] = list(project.classes)
    tag = "trained" if record.get("compared") else "taught"
    empty = np.zeros(0, np.int64)
    return Taught(project.classes, [taught_model(model, record, tag, project.model)],
                  np.zeros((0, 32, 32, 3), np.uint8), empty, {tag: empty})


def taught_model(model: CifarResNet, record: dict, tag: str, data: bytes | None = None) -> TaughtModel:
    """A taught network as every page offers it: "Taught: cat / dog / cup (ResNet-20)", known by its sha256."""
    data = data if data is not None else model_bytes(model, model.arch,
                                                     extra={"taught_from": record.get("taught_from")})
    sha = sha256_bytes(data)
    classes = tuple(model.classes)
    names = " / ".join(classes) if len(" / ".join(classes)) <= 48 else classes_label(classes, 48)
    how = model.arch.label + (", from random weights" if tag == "scratch" else "")
    entry = ModelEntry(name=f"taught-{sha[:12]}", label=f"Taught: {names} ({how})", arch=model.arch, weights=None,
                       source=TAUGHT, record={**record, "classes": list(classes), "sha256": sha})
    return TaughtModel(entry, model.eval(), tag, data)


def from_results(results: dict[str, TeachResult], data: Split) -> Taught:
    """What a finished fine-tune (TeachResult by run tag) leaves in the tab."""
    ordered = [t for t in RUN_TAGS if t in results]
    models = [taught_model(results[t].model, results[t].record, t, result_bytes(results[t])) for t in ordered]
    first = results[ordered[0]]
    held_pred = {t: np.asarray(results[t].holdout_pred, np.int64) for t in ordered}
    return Taught(tuple(data.classes), models, data.images[first.holdout], data.labels[first.holdout], held_pred)
