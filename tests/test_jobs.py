"""The background job machinery: real trainer subprocesses on synthetic data (depth 8, a few images)."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys

import pytest

from resnet_demo.base import storage
from resnet_demo.server import jobs
from resnet_demo.store.events import write_events
from resnet_demo.store.registry import finished_runs
from resnet_demo.training import checkpoint as ckpt
from resnet_demo.training.config import TrainConfig

pytestmark = pytest.mark.timeout(600)

TINY = dict(depth=8, preset="classroom", subset=64, test_subset=32, batch_size=32, device="cpu")


@pytest.fixture
def runs(tmp_path, monkeypatch, synthetic_data_dir):
    monkeypatch.setenv("RESNET_DEMO_DATA", str(synthetic_data_dir))  # the trainer subprocess inherits it
    monkeypatch.setenv("RESNET_DEMO_RUNS", str(tmp_path / "runs"))
    yield tmp_path / "runs"
    jobs.stop(tmp_path / "runs", force=True)  # never leave a trainer behind, even when a test fails


@pytest.mark.slow
def test_stop_leaves_a_checkpoint_and_resume_continues(runs):
    run_id = jobs.start(TrainConfig(**TINY, epochs=500), runs)
    assert jobs.active(runs)["run_id"] == run_id
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.start(TrainConfig(**TINY, epochs=1), runs)
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.resume(run_id, runs)
    s = jobs.wait(run_id, runs, until=lambda s: s.last("step") is not None, timeout=180)
    assert s.state == "running" and 0 < s.progress < 1

    assert jobs.stop(runs) == run_id
    assert jobs.status(run_id, runs).state == "stopping"
    s = jobs.wait(run_id, runs, timeout=120)
    assert s.state == "stopped", s.message
    assert s.has_checkpoint and s.resumable
    assert jobs.active(runs) is None and not (runs / jobs.ACTIVE_FILE).exists()
    stopped_at = s.last("end")["step"]
    assert stopped_at >= 1

    assert jobs.resume(run_id, runs) == run_id
    assert not (runs / run_id / jobs.STOP_FILE).exists()
    s = jobs.wait(run_id, runs, timeout=180,
                  until=lambda s: ((s.last("start") or {}).get("resumed_from_step")
                                   and s.last("step")["step"] > stopped_at))
    assert s.last("start")["resumed_from_step"] == stopped_at
    jobs.stop(runs)
    assert jobs.wait(run_id, runs, timeout=120).state == "stopped"


@pytest.mark.slow
def test_finished_run_is_listed_everywhere(runs):
    run_id = jobs.start(TrainConfig(**TINY, epochs=2, plain=True), runs)
    s = jobs.wait(run_id, runs, timeout=300)
    assert s.state == "completed", s.message
    assert s.progress == 1.0 and len([e for e in s.events if e["type"] == "epoch"]) == 2
    assert [e.name for e in finished_runs(runs)] == [f"run:{run_id}"]
    assert finished_runs(runs)[0].arch.plain
    assert [r.run_id for r in jobs.list_runs(runs)] == [run_id]
    assert not s.resumable and jobs.active(runs) is None


def test_a_failed_run_says_why(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_DEMO_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.chdir(tmp_path)  # so ./data is not found either
    # The fast preset on all 50,000 images: more than the built-in subset holds, so without the full set it cannot
    # start.
    run_id = jobs.start(TrainConfig(**{**TINY, "subset": None, "preset": "fast"}, epochs=1), runs)
    s = jobs.wait(run_id, runs, timeout=180)
    assert s.state == "failed"
    assert "The full CIFAR-10 was not found" in s.message and "python -m resnet_demo download" in s.message
    assert not s.resumable  # no checkpoint was ever written


def test_stale_lock_is_cleared(runs):
    runs.mkdir(parents=True)
    # a pid that cannot be running: beyond the kernel's pid range
    (runs / jobs.ACTIVE_FILE).write_text(json.dumps({"run_id": "gone", "pid": 2**22 + 7, "created": 0}))
    assert jobs.active(runs) is None
    assert not (runs / jobs.ACTIVE_FILE).exists()
    assert jobs.stop(runs) is None


def test_settings_are_validated_before_anything_starts(runs):
    with pytest.raises(ValueError, match="6n\\+2"):
        jobs.start(TrainConfig(depth=21), runs)
    with pytest.raises(ValueError, match="smaller than one batch"):
        jobs.start(TrainConfig(depth=8, subset=10, batch_size=32), runs)
    assert not runs.exists() or not any(runs.iterdir())


def test_settings_become_cli_arguments():
    cfg = TrainConfig(depth=56, plain=True, preset="fast", epochs=3, subset=5000, device="cpu")
    args = cfg.to_args(run_only=True)
    from resnet_demo.cli import build_parser

    ns = build_parser().parse_args(["train", *args])
    assert (ns.depth, ns.plain, ns.preset, ns.epochs, ns.subset, ns.device) == (56, True, "fast", 3, 5000, "cpu")
    assert ns.test_subset is None and ns.batch_size is None
    assert TrainConfig.from_args(args) == cfg


def test_last_error_reads_only_the_latest_launch(tmp_path):
    (tmp_path / jobs.LOG_FILE).write_text(
        f"{jobs.LAUNCH_MARK}x: cmd\nerror: old problem\n{jobs.LAUNCH_MARK}y: cmd\nTraceback (most recent call last):\n"
        "  File \"x\", line 1\nRuntimeError: new problem\n")
    assert jobs.last_error(tmp_path) == "RuntimeError: new problem"


def test_a_killed_trainer_is_reported_as_killed_and_resumes(runs):
    # kill -9 leaves no end record and no error line: the log's last line is only what the trainer printed
    # last (its start-up line, say), never the reason it ended.
    run_id = jobs.start(TrainConfig(**TINY, epochs=500), runs)
    jobs.wait(run_id, runs, until=lambda s: s.last("checkpoint") is not None, timeout=180)
    os.kill(jobs.active(runs)["pid"], signal.SIGKILL)
    s = jobs.wait(run_id, runs, timeout=60)
    step = ckpt.read_state(runs / run_id / ckpt.FILENAME)["step"]  # the file's, which may be one newer than its event
    assert step >= s.last("checkpoint")["step"]
    assert s.state == "failed" and s.resumable
    assert s.message == (f"the training process ended without finishing (killed or crashed); its last checkpoint "
                         f"at step {step:,} can be resumed")
    log_lines = (runs / run_id / jobs.LOG_FILE).read_text().splitlines()
    assert not any(line.strip() and line.strip() in s.message for line in log_lines)
    jobs.resume(run_id, runs)
    s = jobs.wait(run_id, runs, timeout=180, until=lambda s: (s.last("start") or {}).get("resumed_from_step"))
    assert s.last("start")["resumed_from_step"] == step  # the message named the step the resume starts from


def test_a_trainer_killed_before_its_first_checkpoint_says_so(tmp_path):
    out = tmp_path / "runs" / "r"
    out.mkdir(parents=True)
    (out / jobs.LOG_FILE).write_text(f"{jobs.LAUNCH_MARK}x: cmd\nResNet-8 (78,042 params) on a CPU: 1 epochs\n")
    s = jobs.status("r", tmp_path / "runs")
    assert s.state == "failed" and not s.resumable
    assert s.message == "the training process ended without finishing (killed or crashed) before its first checkpoint"


def _fail_with(code: int):
    def fail(*a, **k):
        raise OSError(code, os.strerror(code), "/srv/secret/runs/.active.json")
    return fail


def _clean(message: str, runs) -> None:
    assert "/" not in message and "Errno" not in message and str(runs) not in message, message


def test_a_full_disk_while_taking_the_lock_leaves_no_lock_behind(runs, monkeypatch, caplog):
    with monkeypatch.context() as m, pytest.raises(jobs.JobError, match="disk is full") as e:
        m.setattr(jobs.os, "write", _fail_with(errno.ENOSPC))
        jobs.start(TrainConfig(**TINY, epochs=1), runs)
    _clean(str(e.value), runs)
    assert "/srv/secret/runs/.active.json" in caplog.text  # the detail is in the server's log
    assert not (runs / jobs.ACTIVE_FILE).exists() and jobs.active(runs) is None
    launched = []  # the next Start is not blocked (the trainer itself is not needed to see that)
    monkeypatch.setattr(jobs, "_launch", lambda runs_, run_id, args: launched.append(run_id))
    run_id = jobs.start(TrainConfig(**TINY, epochs=1), runs)
    assert launched == [run_id] and jobs.active(runs)["run_id"] == run_id
    jobs._release(runs, run_id)


@pytest.mark.parametrize("code, message", [(errno.EACCES, "may not write to its runs folder"),
                                           (errno.ENOSPC, "disk is full"), (errno.EIO, "could not be written")])
def test_an_unwritable_run_folder_gives_a_clean_error_and_releases_the_lock(runs, monkeypatch, code, message):
    def refuse(path, obj):
        raise storage.StorageError(code, f"could not save {path}: {os.strerror(code)}")

    monkeypatch.setattr(jobs, "atomic_write_json", refuse)  # job.json, the first file of a new run
    with pytest.raises(jobs.JobError, match=message) as e:
        jobs.start(TrainConfig(**TINY, epochs=1), runs)
    _clean(str(e.value), runs)
    assert not (runs / jobs.ACTIVE_FILE).exists()


def test_a_runs_path_that_is_no_folder_gives_a_clean_error(tmp_path):
    (tmp_path / "a-file").write_text("")
    runs = tmp_path / "a-file" / "runs"
    with pytest.raises(jobs.JobError, match="Could not start the training job: the runs folder could not be written"):
        jobs.start(TrainConfig(**TINY, epochs=1), runs)


def test_an_empty_lock_left_by_a_crash_does_not_block_for_long(runs):
    runs.mkdir(parents=True)
    (runs / jobs.ACTIVE_FILE).write_text("")
    assert jobs.active(runs) is None and (runs / jobs.ACTIVE_FILE).exists()  # maybe being written right now
    old = os.stat(runs / jobs.ACTIVE_FILE).st_mtime - jobs.UNREADABLE_GRACE_S - 1
    os.utime(runs / jobs.ACTIVE_FILE, (old, old))
    assert jobs.active(runs) is None and not (runs / jobs.ACTIVE_FILE).exists()


def test_stop_asks_with_a_signal_when_no_stop_file_can_be_written(runs, monkeypatch):
    runs.mkdir(parents=True)
    # a stand-in trainer: its command line names the run, as the real one's does
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "run-x"])
    try:
        (runs / jobs.ACTIVE_FILE).write_text(json.dumps({"run_id": "run-x", "pid": proc.pid, "created": 0}))
        monkeypatch.setattr(jobs.Path, "write_text", _fail_with(errno.ENOSPC))
        assert jobs.stop(runs) == "run-x"
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        proc.kill()


SERVER = "/srv/teacher/resnet-demo/runs"
CRASHES = [  # the last line of a trainer's traceback, and what the Train page says instead
    (f"FileNotFoundError: [Errno 2] No such file or directory: '{SERVER}/r/checkpoint.safetensors'",
     jobs.INTERNAL_ERROR),
    (f"OSError: [Errno 28] No space left on device: '{SERVER}/r/.model.safetensors.x1.tmp'", "disk is full"),
    (f"PermissionError: [Errno 13] Permission denied: '{SERVER}/r/events.jsonl'", "may not write to its run folder"),
    ("RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes",
     "ran out of memory. Try a smaller batch size"),
    ("numpy.core._exceptions._ArrayMemoryError: Unable to allocate 1.17 GiB for an array with shape (50000, 3072)",
     "ran out of memory"),
    ("ValueError: cannot reshape array of size 3 into shape (32,32,3) reading /home/t/data/train.npz",
     "the training data could not be read"),
    ("KeyError: 'state'", jobs.INTERNAL_ERROR),
]


@pytest.mark.parametrize("line, said", CRASHES)
def test_a_crash_is_told_in_words_without_a_server_path_and_the_log_keeps_it(tmp_path, line, said):
    out = tmp_path / "runs" / "r"
    out.mkdir(parents=True)
    (out / jobs.LOG_FILE).write_text(f"{jobs.LAUNCH_MARK}x: cmd\nTraceback (most recent call last):\n  File \"{SERVER}"
                                     f"/x.py\", line 1, in <module>\n{line}\n")
    s = jobs.status("r", tmp_path / "runs")
    assert s.state == "failed"
    assert said in s.message and s.detail == line == jobs.last_error(out)
    assert "/" not in s.message and "Errno" not in s.message and str(tmp_path) not in s.message


def test_the_trainers_own_messages_keep_their_words_but_no_server_path(tmp_path):
    out = tmp_path / "runs" / "r"
    said = (f"the loss became nan at step 3 (epoch 0.30); training diverged. Try a lower --lr. The last good "
            f"checkpoint in {out} is kept.")
    write_events(out / "events.jsonl", [{"type": "start", "label": "ResNet-8"},
                                             {"type": "end", "status": "failed", "message": said}])
    s = jobs.status("r", tmp_path / "runs")
    assert s.state == "failed" and s.detail == said
    assert s.message == ("the loss became nan at step 3 (epoch 0.30); training diverged. Try a lower --lr. The last "
                         "good checkpoint in this run's folder is kept.")
    assert jobs.for_people(f"could not save {out}/checkpoint.safetensors: the disk is full; the previous file there "
                           f"is unchanged", out) == ("could not save checkpoint.safetensors: the disk is full; the "
                                                     "previous file there is unchanged")
    assert jobs.for_people("1,000 images/s; 2/3 done; lr ÷10 at 32k", out) == "1,000 images/s; 2/3 done; lr ÷10 at 32k"
    assert jobs.for_people("The full CIFAR-10 was not found (looked in: /srv/data, /home/t/data).", out) \
        == jobs.DATA_MISSING


def test_only_a_run_without_a_checkpoint_starts_again_and_only_one_with_one_resumes(runs, monkeypatch):
    launched = []
    monkeypatch.setattr(jobs, "_launch", lambda runs_, run_id, args: launched.append((run_id, args)))
    out = runs / "r"
    out.mkdir(parents=True)
    (out / jobs.LOG_FILE).write_text(f"{jobs.LAUNCH_MARK}x: cmd\n")
    assert not jobs.status("r", runs).restartable  # started from a terminal: how, the page cannot tell
    with pytest.raises(jobs.JobError, match="not started from this page"):
        jobs.restart("r", runs)
    (out / jobs.JOB_FILE).write_text(json.dumps({"args": ["--depth", "8", "--subset", "512"]}))
    (out / "events.jsonl").write_text('{"type": "start", "label": "ResNet-8"}\n')  # the killed attempt's
    s = jobs.status("r", runs)
    assert s.restartable and not s.resumable
    with pytest.raises(jobs.JobError, match="no checkpoint to resume from; it can be started again"):
        jobs.resume("r", runs)
    assert jobs.restart("r", runs) == "r"
    assert launched == [("r", ["--depth", "8", "--subset", "512", "--resume"])]
    assert not (out / "events.jsonl").exists()  # the page shows the new attempt, not the killed one
    jobs._release(runs, "r")
    (out / "checkpoint.safetensors").write_bytes(b"")
    assert not jobs.status("r", runs).restartable
    with pytest.raises(jobs.JobError, match="resume it rather than start it again"):
        jobs.restart("r", runs)
