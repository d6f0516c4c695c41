"""A tab's Teach work (app/lesson.py) without a browser: photos of any size and format taken in, duplicates and
caps, the minimum, the held-out score and confusion matrix for 2 to 6 classes, the project file both ways, and
nothing of a tab kept anywhere once the tab lets go of it."""
from __future__ import annotations

import gc
import io
import time
import weakref

import numpy as np
import pytest
from PIL import Image
from teach_images import SHAPES, small

from resnet_demo.app import lesson
from resnet_demo.app.charts.testset import confusion_figure
from resnet_demo.app.pages import teach_page
from resnet_demo.server.teach_queue import DONE, TeachQueue
from resnet_demo.store.project import ProjectError, project_bytes, read_project
from resnet_demo.training.teach import SCRATCH, TeachConfig

QUICK = TeachConfig(start=SCRATCH, depth=8, steps=3, batch_size=16, eval_every=0, holdout=0.2)


def filled(names, per_class=5) -> lesson.Lesson:
    work = lesson.Lesson([lesson.Group(n) for n in names])
    kinds = list(SHAPES)
    for i, group in enumerate(work.groups):
        for seed in range(per_class):
            assert work.add(group.id, *small(kinds[i % len(kinds)], 100 * i + seed), "x") is None
    return work


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_photos_of_any_size_and_format_are_taken_in():
    """What a phone or a laptop gives: a large JPEG rotated by EXIF, a transparent PNG, a palette GIF, a 16-bit
    grey PNG, a WebP, a tall BMP; each becomes one 32x32 image and one thumbnail."""
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the photo is viewed upright
    rgba = Image.new("RGBA", (300, 200), (200, 30, 30, 128))
    grey16 = Image.fromarray((np.arange(256 * 256, dtype=np.uint32).reshape(256, 256) % 65536).astype(np.uint16))
    files = {"phone.jpg": _encoded(big, "JPEG", quality=85, exif=exif), "clear.png": _encoded(rgba, "PNG"),
             "anim.gif": _encoded(rgba.convert("P"), "GIF"), "deep.png": _encoded(grey16, "PNG"),
             "web.webp": _encoded(rgba.convert("RGB"), "WEBP"),
             "tall.bmp": _encoded(big.resize((50, 900)), "BMP")}
    work = lesson.Lesson()
    group = work.groups[0]
    notes = [teach_page._one(work, group, data, name) for name, data in files.items()]
    assert notes == [None] * len(files)
    assert len(group.examples) == len(files)
    for e in group.examples:
        assert e.small.shape == (32, 32, 3) and e.thumb.shape == (64, 64, 3)
        assert e.small.dtype == np.uint8 and e.thumb.dtype == np.uint8
    bad = teach_page._one(work, group, b"\x89PNG\r\n\x1a\n truncated", "broken.png")
    assert bad is not None and "broken" in bad and "damaged" in bad and len(group.examples) == len(files)


def test_duplicates_and_caps_are_refused_with_a_reason(monkeypatch):
    work = lesson.Lesson([lesson.Group("red"), lesson.Group("green")])
    red, green = work.groups
    image = small("red square", 1)
    assert work.add(red.id, *image, "a.png") is None
    assert "already in this class" in work.add(red.id, *image, "b.png")
    assert "already in the class red" in work.add(green.id, *image, "c.png")
    monkeypatch.setattr(lesson, "MAX_PER_CLASS", 2)
    assert work.add(red.id, *small("red square", 2), "d.png") is None
    assert "at most 2 images" in work.add(red.id, *small("red square", 3), "e.png")
    for _ in range(10):
        work.add_group()
    assert len(work.groups) == lesson.MAX_CLASSES
    for g in list(work.groups):
        work.remove_group(g.id)
    assert len(work.groups) == lesson.MIN_CLASSES


def test_the_minimum_and_bad_names_say_why():
    work = filled(["cup", "pen"], per_class=lesson.MIN_PER_CLASS - 1)
    (problem,) = work.problems()
    assert f"at least {lesson.MIN_PER_CLASS} images" in problem and "held out" in problem and "cup, pen" in problem
    work = filled(["cup", "CUP"])
    assert work.problems() == ["Class names: the class name 'CUP' appears and 'cup' (the same name, ignoring "
                               "case); every class needs its own name."]
    work = filled(["cup", " "])
    assert work.problems() == ["Give every class a name."]
    assert filled(["cup", "pen"]).problems() == []


def _taught(work: lesson.Lesson, config: TeachConfig = QUICK) -> lesson.Taught:
    queue = TeachQueue()
    data = work.split()
    ticket = queue.submit(data, config, owner=work)
    deadline = time.monotonic() + 300
    while not ticket.done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ticket.state == DONE, ticket.error
    return lesson.from_results(ticket.results, data)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_held_out_score_and_confusion_matrix_for_2_to_6_classes(k):
    names = [f"thing {i}" for i in range(k)]
    per_class = [5 + 2 * i for i in range(k)]  # uneven: 1 or 2 held out a class
    work = lesson.Lesson([lesson.Group(n) for n in names])
    kinds = list(SHAPES)
    for i, (group, n) in enumerate(zip(work.groups, per_class, strict=True)):
        for seed in range(n):
            work.add(group.id, *small(kinds[i % len(kinds)], 1000 * i + seed), "x")
    taught = _taught(work)
    record, pred, labels = taught.main.record, taught.held_pred["taught"], taught.held_labels
    held_per_class = [max(1, round(0.2 * n)) for n in per_class]
    assert np.bincount(labels, minlength=k).tolist() == held_per_class  # stratified, in the names' order
    confusion = np.asarray(record["confusion"])
    assert confusion.shape == (k, k) and confusion.sum(1).tolist() == held_per_class
    expected = np.zeros((k, k), np.int64)
    np.add.at(expected, (labels, pred), 1)  # rows: true class, columns: the network's answer
    assert (confusion == expected).all()
    assert record["holdout_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert record["holdout_accuracy"] == pytest.approx((pred == labels).mean())
    assert list(record["per_class"]) == names and record["classes"] == names
    figure = confusion_figure(confusion, classes=tuple(names), clickable=False)
    assert list(figure.data[0].x) == names and list(figure.data[0].y) == names


def test_class_names_that_look_like_numbers_stay_categories():
    figure = confusion_figure(np.eye(3, dtype=int), classes=("1", "10", "2"), clickable=False)
    assert figure.layout.xaxis.type == "category" and figure.layout.yaxis.type == "category"


def test_a_project_round_trip_keeps_names_images_thumbnails_and_model():
    work = filled(["red square", "green disc"])
    work.taught = _taught(work)
    project, note = work.project()
    assert note is None
    opened = lesson.from_project(read_project(project_bytes(project)))
    assert opened.names() == work.names() and opened.count() == work.count()
    for a, b in zip(work.groups, opened.groups, strict=True):
        assert [e.digest for e in a.examples] == [e.digest for e in b.examples]
        assert all((x.thumb == y.thumb).all() for x, y in zip(a.examples, b.examples, strict=True))
    assert opened.taught.main.entry.name == work.taught.main.entry.name  # the same model bytes
    assert opened.taught.main.record["confusion"] == work.taught.main.record["confusion"]

    work.groups[0].name = "red box"  # renamed after teaching: the model knows other names
    project, note = work.project()
    assert project.model is None and "other class names" in note


def test_a_project_the_page_cannot_hold_is_refused(monkeypatch):
    work = filled(["a", "b", "c", "d", "e", "f"])
    project, _ = work.project()
    project.classes = (*project.classes, "g")
    with pytest.raises(ProjectError, match="7 classes; this page works with 2 to 6"):
        lesson.from_project(project)
    five_a_class = filled(["a", "b"]).project()[0]
    monkeypatch.setattr(lesson, "MAX_PER_CLASS", 4)
    with pytest.raises(ProjectError, match="at most 4 a class"):
        lesson.from_project(five_a_class)


def test_nothing_of_a_tab_is_kept_once_it_lets_go():
    """The queue holds a tab's work only weakly: when the session state drops the lesson, its images, models and
    ticket go with it."""
    work = filled(["red square", "green disc"])
    work.taught = _taught(work)
    refs = [weakref.ref(x) for x in (work, work.taught, work.taught.main.model, work.groups[0].examples[0])]
    del work
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)


def test_a_tab_with_100_images_holds_about_1_5_mb_of_them():
    work = filled(["a", "b", "c", "d", "e"], per_class=20)
    assert work.count() == 100
    per_image = 32 * 32 * 3 + 64 * 64 * 3
    assert work.nbytes() == 100 * per_image  # 15,360 bytes an image: the photos themselves are not kept
