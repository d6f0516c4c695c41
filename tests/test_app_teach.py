"""The Teach page (AppTest): classes and their images (files, camera, delete, duplicates, bad files), the minimum
before training, Train and Compare through the server's queue, the taught model offered to every page of the
tab, a project saved and opened again, and a locked tab refused on the server."""
from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest
from teach_images import photo, small

from apptest_util import APP, TIMEOUT, assert_clean, open_page, unmark
from resnet_demo.app import finetunes, lesson, teach_panels, teacher
from resnet_demo.app.pages import teach_page
from resnet_demo.server import jobs
from resnet_demo.store.project import project_bytes, read_project

pytestmark = pytest.mark.timeout(900)

PASSWORD = "correct horse battery staple"
KINDS = ("red square", "green disc", "blue bar")


@pytest.fixture
def env(app_env, monkeypatch, tiny_weights_dir):
    """The tiny shipped ResNet-8 to start from, no password, and teaches a few steps long."""
    monkeypatch.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    monkeypatch.delenv(jobs.TEACHER_PASSWORD_ENV, raising=False)
    monkeypatch.delenv(finetunes.ENV_TEACH, raising=False)
    monkeypatch.setattr(teach_panels, "STEPS", (4, 8))
    monkeypatch.setattr(teach_panels, "DEFAULT_STEPS", 4)
    monkeypatch.setattr(teacher, "WRONG_GUESS_DELAY_S", 0.01)
    return app_env


def ready_lesson(per_class: int = 6, kinds=KINDS) -> lesson.Lesson:
    """A lesson whose classes have names and images enough to train."""
    work = lesson.Lesson([lesson.Group(kind) for kind in kinds])
    for group, kind in zip(work.groups, kinds, strict=True):
        for seed in range(per_class):
            assert work.add(group.id, *small(kind, seed), "a test image") is None
    return work


def open_with(work: lesson.Lesson | None = None, at: AppTest | None = None) -> AppTest:
    at = at if at is not None else AppTest.from_file(APP, default_timeout=TIMEOUT)
    if work is not None:
        at.session_state[teach_page.KEY] = work
    return open_page("teach", at)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def until_taught(at: AppTest, timeout_s: float = 600) -> AppTest:
    """Rerun until the fine-tune's results are on the page (it runs in the server's queue meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        at.run()
        assert_clean(at)
        work = at.session_state[teach_page.KEY]
        if work.ticket is None and (work.taught is not None or work.note):
            return at
        time.sleep(0.5)
    raise AssertionError("the fine-tune did not finish in time")


@pytest.mark.slow
def test_classes_images_the_minimum_and_deleting(env):
    at = open_page("teach")
    assert_clean(at)
    assert at.button(key="teach_train").disabled
    assert any("Give every class a name" in w.value for w in at.warning)
    work = at.session_state[teach_page.KEY]
    first, second = work.groups
    at.text_input(key=f"teach_name_{first.id}").input("red square")
    at.text_input(key=f"teach_name_{second.id}").input("green disc").run()
    at.file_uploader(key=f"teach_files_{first.id}_0").set_value(
        [(f"r{i}.png", photo("red square", i), "image/png") for i in range(5)]).run()
    assert_clean(at)
    assert len(first.examples) == 5 and "**5** images" in " ".join(m.value for m in at.markdown)
    assert any("Still short: green disc" in w.value for w in at.warning)  # the minimum, with its reason
    assert any("held out to test" in w.value for w in at.warning)
    assert at.button(key="teach_train").disabled

    files = [(f"g{i}.jpg", photo("green disc", i, fmt="JPEG"), "image/jpeg") for i in range(4)]
    files += [("same.png", photo("red square", 0), "image/png"), ("notes.txt", b"not an image", "text/plain")]
    at.file_uploader(key=f"teach_files_{second.id}_0").set_value(files).run()
    assert_clean(at)
    assert len(second.examples) == 4 and len(first.examples) == 5
    notes = " ".join(w.value for w in at.warning)
    assert "already in the class red square" in notes and "not an image" in notes

    at.toggle(key=f"teach_camera_on_{second.id}").set_value(True).run()
    shot = ("shot.jpg", photo("green disc", 99, fmt="JPEG"), "image/jpeg")
    at.camera_input(key=f"teach_camera_{second.id}_0").set_value(shot).run()
    assert_clean(at)
    assert len(second.examples) == 5  # one shot, one image
    assert not at.button(key="teach_train").disabled and not at.button(key="teach_compare").disabled

    at.button(key=f"teach_del_{first.examples[0].id}").click().run()
    assert len(first.examples) == 4 and at.button(key="teach_train").disabled
    at.button(key="teach_add_class").click().run()
    assert len(work.groups) == 3 and at.button(key="teach_train").disabled  # a class with no name, no images
    at.button(key=f"teach_remove_{work.groups[2].id}").click().run()
    assert len(work.groups) == 2
    assert at.button(key=f"teach_remove_{first.id}").disabled  # two classes at least


def test_too_many_files_at_once_are_refused_whole(env):
    at = open_page("teach")
    files = [(f"r{i}.png", photo("red square", i, size=40), "image/png") for i in range(teach_page.MAX_FILES + 1)]
    group = at.session_state[teach_page.KEY].groups[0]
    at.file_uploader(key=f"teach_files_{group.id}_0").set_value(files).run()
    assert_clean(at)
    assert any(f"At most {teach_page.MAX_FILES} images at a time" in w.value for w in at.warning)
    assert at.session_state[teach_page.KEY].count() == 0


@pytest.mark.slow
def test_train_then_compare_and_the_model_reaches_every_page_of_the_tab(env):
    at = open_with(ready_lesson())
    assert not at.button(key="teach_train").disabled
    at.button(key="teach_train").click()
    at = until_taught(at)
    work = at.session_state[teach_page.KEY]
    assert work.note is None and work.taught is not None
    model = work.taught.main
    record = model.record
    assert record["classes"] == list(KINDS) and record["holdout_images"] == 3 and record["train_images"] == 15
    assert sum(map(sum, record["confusion"])) == 3 and len(record["confusion"]) == 3
    assert "Held-out accuracy" in metrics(at)
    assert model.entry.label == "Taught: red square / green disc / blue bar (ResNet-8)"
    confusion = [c for c in at.get("plotly_chart") if "teach_confusion_taught" in c.proto.id]
    assert len(confusion) == 1 and all(k in confusion[0].proto.spec for k in KINDS)  # the confusion matrix

    at.button(key="teach_compare").click()
    at = until_taught(at)
    taught = at.session_state[teach_page.KEY].taught
    assert [m.tag for m in taught.models] == ["trained", "scratch"]
    assert {"Started trained", "Started from random weights"} <= set(metrics(at))
    assert any("transfer learning" in m.value for m in at.markdown)

    at._page_hash = next(h for h, info in at._registered_pages.items() if info.get("url_pathname") == "")
    at.run()  # Predict (the home page), in the same tab: its taught models are on offer
    assert_clean(at)
    assert at.title[0].value == "Predict"
    options = at.selectbox(key="model").options
    assert sum(o.startswith("Taught: red square / green disc / blue bar") for o in options) == 2
    other_tab = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not [o for o in other_tab.selectbox(key="model").options if o.startswith("Taught")]


@pytest.mark.slow
def test_save_and_open_a_project(env, tmp_path):
    at = open_with(ready_lesson(per_class=5, kinds=KINDS[:2]))
    at.button(key="teach_train").click()
    at = until_taught(at)
    work = at.session_state[teach_page.KEY]
    project, note = work.project()
    assert note is None and project.model is not None
    data = project_bytes(project)
    assert read_project(data).classes == ("red square", "green disc")

    fresh = open_page("teach")
    fresh.file_uploader(key="teach_open_0").set_value(("two.teach.zip", data, "application/zip")).run()
    assert_clean(fresh)
    opened = fresh.session_state[teach_page.KEY]
    assert opened.names() == ["red square", "green disc"] and opened.count() == 10
    assert opened.taught is not None and opened.taught.main.entry.name == work.taught.main.entry.name
    assert any("Opened two.teach.zip" in unmark(s.value) for s in fresh.success)
    assert "Held-out accuracy" in metrics(fresh)

    fresh.file_uploader(key="teach_open_1").set_value(("broken.teach.zip", data[:100], "application/zip")).run()
    assert_clean(fresh)
    errors = [unmark(e.value) for e in fresh.error]
    assert len(errors) == 1 and "broken.teach.zip could not be opened: not a project file" in errors[0], errors
    assert fresh.session_state[teach_page.KEY] is opened  # the work here is kept


def _forged_train():
    """What a forged click on the disabled Train button would reach: the handler itself."""
    import streamlit as st

    from resnet_demo.app import finetunes
    from resnet_demo.app.pages import teach_page
    from resnet_demo.app.teach_panels import start_teaching

    queued = start_teaching(teach_page.current(), False, "resnet8", 4)
    st.write(f"queued={queued} counts={finetunes.queue().counts()}")


def test_a_locked_tab_is_refused_on_the_server(env, monkeypatch):
    monkeypatch.setenv(jobs.TEACHER_PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv(finetunes.ENV_TEACH, finetunes.TEACHER)
    finetunes._policy.clear()  # a new server: the setting is read when the server starts
    try:
        student = open_with(ready_lesson())
        assert_clean(student)
        assert student.button(key="teach_train").disabled
        assert any(finetunes.LOCKED in i.value for i in student.info)

        forged = AppTest.from_function(_forged_train, default_timeout=TIMEOUT)
        forged.session_state[teach_page.KEY] = ready_lesson()
        forged.run()
        assert not forged.exception, [e.value for e in forged.exception]
        assert [e.value for e in forged.error] == [teacher.LOCKED_HELP]
        assert "queued=False counts=(0, 0)" in forged.markdown[0].value
        assert forged.session_state[teach_page.KEY].ticket is None

        teacher_tab = open_with(ready_lesson())
        teacher_tab.sidebar.text_input(key="teacher_password_input").input(PASSWORD)
        teacher_tab.sidebar.button(key="teacher_unlock_submit").click().run()
        assert not teacher_tab.button(key="teach_train").disabled
        teacher_tab.toggle(key="teach_students").set_value(True).run()  # the teacher opens Teach to students
        assert finetunes.students_may_teach()
        student.run()
        assert not student.button(key="teach_train").disabled
    finally:
        finetunes._policy.clear()
