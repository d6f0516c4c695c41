"""Teacher controls (issue 29, item 2): with a teacher password set, only a tab that has entered it can start, stop
and resume training; every other tab watches. Without one, anyone can, and the page says so. Every action is refused
on the server too (issue 39): a forged click on a greyed-out button does nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apptest_util import APP, TIMEOUT, assert_clean, open_page
from resnet_demo.app import teacher
from resnet_demo.server import jobs
from resnet_demo.training import budget
from resnet_demo.training.config import TrainConfig

pytestmark = pytest.mark.timeout(900)

PASSWORD = "correct horse battery staple"


@pytest.fixture
def env(app_env, monkeypatch):
    monkeypatch.delenv(jobs.TEACHER_PASSWORD_ENV, raising=False)
    monkeypatch.setattr(teacher, "WRONG_GUESS_DELAY_S", 0.01)
    return app_env


def _captions(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


def _unlock(at: AppTest, guess: str) -> AppTest:
    at.sidebar.text_input(key="teacher_password_input").input(guess)
    return at.sidebar.button(key="teacher_unlock_submit").click().run()


def _everything_shown(at: AppTest) -> str:
    """Every element the page sent, as text (values, labels, help, markdown)."""
    return " ".join(str(getattr(node, "proto", "")) for node in at._tree)


def test_without_a_password_anyone_can_train_and_the_page_says_so(env):
    at = open_page("train")
    assert_clean(at)
    assert "No teacher password is set" in _captions(at)
    assert not at.button(key="train_start").disabled
    assert not at.sidebar.text_input  # no unlock form


@pytest.mark.parametrize("source", ["environment", "secrets"])
def test_with_a_password_students_watch_and_the_teacher_unlocks(env, monkeypatch, source):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if source == "environment":
        monkeypatch.setenv(jobs.TEACHER_PASSWORD_ENV, PASSWORD)
    else:
        at.secrets["teacher_password"] = PASSWORD
    at = open_page("train", at)
    assert_clean(at)
    assert at.button(key="train_start").disabled
    assert "Only the teacher can start, stop and resume training" in _captions(at)

    at = _unlock(at, "wrong guess")
    assert_clean(at)
    assert any("That is not the teacher password" in e.value for e in at.error)
    assert at.button(key="train_start").disabled

    at = _unlock(at, PASSWORD)
    assert_clean(at)
    assert not at.button(key="train_start").disabled
    assert "Teacher controls are unlocked in this tab" in _captions(at)
    assert "Training loss" in _everything_shown(at) or "Settings" in _everything_shown(at)  # the helper sees text
    assert PASSWORD not in _everything_shown(at) and PASSWORD not in str(dict(at.query_params))
    assert "teacher_password_input" not in at.session_state or at.session_state["teacher_password_input"] != PASSWORD

    other = AppTest.from_file(APP, default_timeout=TIMEOUT)  # another tab: still a student
    if source == "secrets":
        other.secrets["teacher_password"] = PASSWORD
    other = open_page("train", other)
    assert other.button(key="train_start").disabled

    at.sidebar.button(key="teacher_lock").click().run()
    assert at.button(key="train_start").disabled


def test_wrong_guesses_are_slowed_and_the_password_never_logged(env, monkeypatch, caplog):
    monkeypatch.setenv(jobs.TEACHER_PASSWORD_ENV, PASSWORD)
    at = open_page("train")
    for i in range(teacher.LOCKOUT[0]):
        at = _unlock(at, f"guess {i}")
    at = _unlock(at, PASSWORD)  # even the right one waits out the lockout
    assert any("Too many wrong guesses" in e.value for e in at.error)
    assert at.button(key="train_start").disabled
    assert "guess 0" not in caplog.text and PASSWORD not in caplog.text
    assert "a wrong teacher password was entered" in caplog.text


def test_a_student_cannot_stop_the_job_the_teacher_can(env, monkeypatch, running_job):
    runs, run_id = running_job
    monkeypatch.setenv("RESNET_DEMO_RUNS", str(runs))
    monkeypatch.setenv(jobs.TEACHER_PASSWORD_ENV, PASSWORD)
    student = open_page("train")
    assert_clean(student)
    assert student.button(key="train_stop").disabled

    forged = AppTest.from_function(_call_the_actions_without_unlocking, default_timeout=TIMEOUT).run()
    assert not forged.exception, [e.value for e in forged.exception]
    assert [e.value for e in forged.error] == [teacher.LOCKED_HELP] * 5  # refused on the server, not only greyed out
    assert not forged.get("progress")  # no download began
    assert not (runs / run_id / jobs.STOP_FILE).exists() and jobs.active(runs)["run_id"] == run_id

    monkeypatch.delenv(jobs.TEACHER_PASSWORD_ENV)  # Stop drawn enabled; locked by the time the click arrives
    stale = open_page("train")
    assert not stale.button(key="train_stop").disabled
    monkeypatch.setenv(jobs.TEACHER_PASSWORD_ENV, PASSWORD)
    stale.button(key="train_stop").click().run()  # its callback runs before the page is drawn again
    assert_clean(stale)
    assert teacher.LOCKED_HELP in [e.value for e in stale.error]
    assert not (runs / run_id / jobs.STOP_FILE).exists() and jobs.active(runs)["run_id"] == run_id

    teacher_tab = _unlock(open_page("train"), PASSWORD)
    assert not teacher_tab.button(key="train_stop").disabled
    teacher_tab.button(key="train_stop").click().run()
    assert (runs / run_id / jobs.STOP_FILE).exists()


def _call_the_actions_without_unlocking():
    """What a forged click on a disabled button would reach."""
    from resnet_demo.app import teacher
    from resnet_demo.app.pages import train_page
    from resnet_demo.training.config import TrainConfig

    teacher.stop()
    teacher.start(TrainConfig(depth=8))
    teacher.resume("20260101-000000-resnet20")
    teacher.restart("20260101-000000-resnet20")
    train_page._download()


def _killed_before_its_first_checkpoint(runs: Path) -> str:
    """A run started from the Train page whose trainer was killed during start-up: job.json, a log, nothing else."""
    run_id = "20260101-000000-resnet8"
    (runs / run_id).mkdir(parents=True)
    settings = TrainConfig(depth=8, preset="classroom", subset=64, batch_size=32, device="cpu")
    (runs / run_id / jobs.JOB_FILE).write_text(json.dumps({"args": settings.to_args(run_only=True),
                                                            "settings": settings.run_settings()}))
    (runs / run_id / jobs.LOG_FILE).write_text(f"{jobs.LAUNCH_MARK}2026-01-01 00:00:00: python -m resnet_demo train\n")
    return run_id


def test_a_click_from_a_tab_that_may_no_longer_act_does_nothing(env, monkeypatch, tmp_path):
    """The buttons were enabled when the page was drawn; by the time the click reaches the server, a teacher password
    has been set (secrets.toml is read live) and this tab has not entered it. Nothing starts, restarts or downloads.
    (Streamlit itself drops a click on a button the server draws disabled; a callback runs before that drawing,
    and every action checks teacher.may_act() itself, as test_a_student_cannot_stop_the_job_the_teacher_can shows.)"""
    from resnet_demo.app.pages import train_page

    run_id = _killed_before_its_first_checkpoint(tmp_path / "runs")
    calls = []
    monkeypatch.setattr(jobs, "restart", lambda *a, **k: calls.append(("restart", a)) or run_id)
    monkeypatch.setattr(jobs, "start", lambda *a, **k: calls.append(("start", a)) or run_id)
    monkeypatch.setattr(train_page, "download_cifar10", lambda *a, **k: calls.append(("download", a)))
    failed = ("Training failed: the training process ended without finishing (killed or crashed) before its first "
              "checkpoint")
    for key in ("train_restart", "train_download", "train_start"):
        monkeypatch.delenv(jobs.TEACHER_PASSWORD_ENV, raising=False)
        tab = open_page("train")
        assert not tab.button(key=key).disabled, key
        monkeypatch.setenv(jobs.TEACHER_PASSWORD_ENV, PASSWORD)
        tab = tab.button(key=key).click().run()
        assert_clean(tab)
        assert [e.value for e in tab.error if e.value != failed] in ([], [teacher.LOCKED_HELP]), key
        assert tab.button(key=key).disabled
    assert calls == [] and jobs.active(tmp_path / "runs") is None

    teacher_tab = _unlock(open_page("train"), PASSWORD)
    teacher_tab.button(key="train_restart").click().run()
    assert_clean(teacher_tab)
    assert calls == [("restart", (run_id,))]


def test_a_job_too_big_for_the_server_is_explained_and_cannot_start(env, monkeypatch):
    monkeypatch.setenv(budget.ENV_MAX_GB, "1.5")
    at = open_page("train")
    assert any("Needs about" in c.value and "1.5 GB this server allows" in c.value for c in at.caption)
    at.selectbox(key="train_depth").set_value(110)
    at.number_input(key="train_batch_classroom").set_value(1024)
    at.run()
    assert_clean(at)
    assert any("ResNet-110 at batch 1024 on the CPU needs about" in e.value and "Try batch" in e.value
               for e in at.error)
    assert at.button(key="train_start").disabled


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs /proc to read a process's environment")
def test_the_password_never_reaches_the_trainer(tmp_path, monkeypatch, synthetic_data_dir):
    monkeypatch.setenv(jobs.TEACHER_PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("teacher_password", PASSWORD)  # where Streamlit puts a secrets.toml's top-level value
    monkeypatch.setenv("RESNET_DEMO_DATA", str(synthetic_data_dir))
    runs = tmp_path / "runs"
    run_id = jobs.start(TrainConfig(depth=8, preset="classroom", subset=64, test_subset=32, batch_size=32,
                                    device="cpu", epochs=500), runs)
    try:
        environ = Path(f"/proc/{jobs.active(runs)['pid']}/environ").read_bytes()
        assert PASSWORD.encode() not in environ and b"RESNET_DEMO_DATA" in environ
        assert PASSWORD not in (runs / run_id / jobs.LOG_FILE).read_text()
    finally:
        jobs.stop(runs, force=True)
        jobs.wait(run_id, runs, timeout=120)
