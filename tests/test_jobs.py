"""The background job machinery: real trainer subprocesses on synthetic data (depth 8, a few images)."""
from __future__ import annotations

import json

import pytest

from resnet_demo import jobs
from resnet_demo.weights import finished_runs

pytestmark = pytest.mark.timeout(600)

TINY = dict(depth=8, preset="classroom", subset=64, test_subset=32, batch_size=32, device="cpu")


@pytest.fixture
def runs(tmp_path, monkeypatch, synthetic_data_dir):
    monkeypatch.setenv("RESNET_DEMO_DATA", str(synthetic_data_dir))  # the trainer subprocess inherits it
    monkeypatch.setenv("RESNET_DEMO_RUNS", str(tmp_path / "runs"))
    yield tmp_path / "runs"
    jobs.stop(tmp_path / "runs", force=True)  # never leave a trainer behind, even when a test fails


def test_stop_leaves_a_checkpoint_and_resume_continues(runs):
    run_id = jobs.start(jobs.JobSettings(**TINY, epochs=500), runs)
    assert jobs.active(runs)["run_id"] == run_id
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.start(jobs.JobSettings(**TINY, epochs=1), runs)
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
                  until=lambda s: (s.last("start") or {}).get("resumed_from_step") and s.last("step")["step"] > stopped_at)
    assert s.last("start")["resumed_from_step"] == stopped_at
    jobs.stop(runs)
    assert jobs.wait(run_id, runs, timeout=120).state == "stopped"


def test_finished_run_is_listed_everywhere(runs):
    run_id = jobs.start(jobs.JobSettings(**TINY, epochs=2, plain=True), runs)
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
    # The fast preset on all 50,000 images: more than the built-in subset holds, so without the full set it cannot start.
    run_id = jobs.start(jobs.JobSettings(**{**TINY, "subset": None, "preset": "fast"}, epochs=1), runs)
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
        jobs.start(jobs.JobSettings(depth=21), runs)
    with pytest.raises(ValueError, match="smaller than one batch"):
        jobs.start(jobs.JobSettings(depth=8, subset=10, batch_size=32), runs)
    assert not runs.exists() or not any(runs.iterdir())


def test_settings_become_cli_arguments():
    args = jobs.JobSettings(depth=56, plain=True, preset="fast", epochs=3, subset=5000, device="cpu").args()
    from resnet_demo.cli import build_parser

    ns = build_parser().parse_args(["train", *args])
    assert (ns.depth, ns.plain, ns.preset, ns.epochs, ns.subset, ns.device) == (56, True, "fast", 3, 5000, "cpu")
    assert ns.test_subset is None and ns.batch_size is None


def test_last_error_reads_only_the_latest_launch(tmp_path):
    (tmp_path / jobs.LOG_FILE).write_text(
        f"{jobs.LAUNCH_MARK}x: cmd\nerror: old problem\n{jobs.LAUNCH_MARK}y: cmd\nTraceback (most recent call last):\n"
        "  File \"x\", line 1\nRuntimeError: new problem\n")
    assert jobs.last_error(tmp_path) == "RuntimeError: new problem"
