"""Kill the trainer at any moment, resume it, and get the very run an uninterrupted one gives.

Each case SIGKILLs a `python -m resnet_demo train` process at one of the moments resnet_demo/base/faults.py names
(RESNET_DEMO_KILL_AT), then runs `--resume` to the end, and compares the run folder with an uninterrupted run of
the same settings: model.safetensors byte for byte, metrics.json, preds.npz and the per-epoch records of
events.jsonl, all but the fields named in WALL_CLOCK. The app's path is tested too: Start through server/jobs.py,
the trainer killed before its first checkpoint and mid-epoch, then Start again or Resume, as the Train page offers.

A ResNet-8 on 128 synthetic images, 2 epochs of 4 steps; the cases run two at a time, one thread each.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from resnet_demo.base import faults
from resnet_demo.base.storage import PROJECT_ROOT, TEMP_SUFFIX
from resnet_demo.server import jobs
from resnet_demo.store.evaluate import load_predictions
from resnet_demo.store.events import epochs, read_events
from resnet_demo.training.config import TrainConfig

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SETTINGS = TrainConfig(depth=8, preset="classroom", epochs=2, subset=128, test_subset=64, batch_size=32, device="cpu",
                       precision="fp32")  # 4 steps an epoch
EVERY_STEP = ["--checkpoint-minutes", "0.00001"]  # a mid-epoch checkpoint after every step but an epoch's last
# What legitimately differs between a killed-and-resumed run and an uninterrupted one: when and how it was run.
WALL_CLOCK = {"metrics": {"wall_time_s", "command"}, "epoch": {"elapsed_s", "eta_s"}}


@dataclass(frozen=True)
class Case:
    name: str
    kill_at: str                    # RESNET_DEMO_KILL_AT for the first process
    checkpoint: bool                # whether a checkpoint is there to resume from after the kill
    temp_file: bool = False         # whether the kill leaves a half-done save's temporary file behind
    args: tuple[str, ...] = ()      # extra options for both processes


CASES = [
    Case("startup", "startup", checkpoint=False),
    Case("before-first-checkpoint", "step:2", checkpoint=False),
    Case("first-checkpoint-write", "write/checkpoint.safetensors:1", checkpoint=False, temp_file=True),
    Case("mid-epoch", "step:6", checkpoint=True),  # epoch 2's second step: epoch 2 replays from its start
    Case("after-mid-epoch-checkpoint", "step:7", checkpoint=True, args=tuple(EVERY_STEP)),  # resumes mid-epoch
    Case("epoch-evaluation", "epoch-evaluation:2", checkpoint=True),  # epoch 2's test curve
    Case("epoch-checkpoint-write", "write/checkpoint.safetensors:2", checkpoint=True, temp_file=True),
    Case("final-evaluation", "evaluate", checkpoint=True),
    Case("model-write", "write/model.safetensors", checkpoint=True, temp_file=True),
    Case("metrics-write", "write/metrics.json", checkpoint=True, temp_file=True),
]


def _env(data_dir: Path, kill_at: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env.update(RESNET_DEMO_DATA=str(data_dir), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p))
    if kill_at:
        env[faults.ENV] = kill_at
    return env


def _train(out: Path, data_dir: Path, args=(), kill_at: str | None = None, resume: bool = False):
    cmd = [sys.executable, "-m", "resnet_demo", "train", *SETTINGS.to_args(run_only=True), *args, "--out", str(out),
           "--quiet", "--ignore-memory-limit", *(["--resume"] if resume else [])]
    return subprocess.run(cmd, env=_env(data_dir, kill_at), capture_output=True, text=True, timeout=600)


def _temp_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX))


def _record(out: Path) -> dict:
    """What must be bit for bit the same however often the run was killed."""
    metrics = json.loads((out / "metrics.json").read_text())
    preds = load_predictions(out / "preds.npz")
    return {
        "model_sha256": hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest(),
        "metrics": {k: v for k, v in metrics.items() if k not in WALL_CLOCK["metrics"]},
        "epochs": [{k: v for k, v in e.items() if k not in WALL_CLOCK["epoch"]}
                   for e in epochs(read_events(out / "events.jsonl"))],
        "preds": {k: (v.dtype.str, v.tobytes()) for k, v in preds.items()},
    }


def _kill_and_resume(case: Case, root: Path, data_dir: Path) -> dict:
    out = root / case.name
    killed = _train(out, data_dir, case.args, kill_at=case.kill_at)
    left = {"checkpoint": (out / "checkpoint.safetensors").is_file(), "metrics": (out / "metrics.json").is_file(),
            "temp_files": _temp_files(out) if out.is_dir() else []}
    resumed = _train(out, data_dir, case.args, resume=True)
    return {"killed": killed, "left": left, "resumed": resumed, "out": out}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_data_dir) -> dict:
    """The uninterrupted run and every case, killed and resumed, two processes at a time."""
    root = tmp_path_factory.mktemp("faults")
    with ThreadPoolExecutor(max_workers=2) as pool:
        reference = pool.submit(_train, root / "reference", synthetic_data_dir)
        cases = {c.name: pool.submit(_kill_and_resume, c, root, synthetic_data_dir) for c in CASES}
        done = reference.result()
        assert done.returncode == 0, done.stderr
        return {"reference": _record(root / "reference"), **{name: f.result() for name, f in cases.items()}}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_run_killed_at_any_moment_resumes_to_the_same_run(runs, case):
    got = runs[case.name]
    assert got["killed"].returncode == -signal.SIGKILL, f"not killed at {case.kill_at}:\n{got['killed'].stderr}"
    left = got["left"]
    assert left["checkpoint"] == case.checkpoint and not left["metrics"], left
    assert bool(left["temp_files"]) == case.temp_file, left
    assert got["resumed"].returncode == 0, got["resumed"].stderr
    if not case.checkpoint:
        assert "no checkpoint in" in got["resumed"].stderr and "starting from scratch" in got["resumed"].stderr
    assert "Traceback" not in got["resumed"].stderr
    assert _record(got["out"]) == runs["reference"]
    assert _temp_files(got["out"]) == []  # what the killed save left was cleared


def test_the_seam_reads_a_point_and_a_count():
    assert faults._target(None) is None and faults._target("") is None
    assert faults._target("startup") == ("startup", 1)
    assert faults._target("step:7") == ("step", 7)
    assert faults._target("write/metrics.json") == ("write/metrics.json", 1)
    assert faults._target("write/checkpoint.safetensors:2") == ("write/checkpoint.safetensors", 2)
    assert faults._target("step:0") == ("step:0", 1)  # no 0th time: a name nothing calls, so nothing is killed


@pytest.mark.parametrize("kill_at, checkpoint", [("step:2", False), ("step:6", True)],
                         ids=["before-first-checkpoint", "mid-epoch"])
def test_the_apps_start_killed_then_resumed_or_started_again_gives_the_same_run(
        runs, tmp_path, monkeypatch, synthetic_data_dir, kill_at, checkpoint):
    """Start as the Train page does (server/jobs.py), the trainer killed; then the button the page offers: Resume
    from the checkpoint, or, with none yet, Start again with the same settings."""
    for key, value in _env(synthetic_data_dir, kill_at).items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)  # the trainer the server spawns inherits them
    where = tmp_path / "runs"
    run_id = jobs.start(SETTINGS, where)
    s = jobs.wait(run_id, where, timeout=300)
    assert s.state == "failed" and s.resumable == checkpoint and s.restartable != checkpoint
    assert s.message.startswith("the training process ended without finishing (killed or crashed)")

    monkeypatch.delenv(faults.ENV)
    if checkpoint:
        with pytest.raises(jobs.JobError, match="resume it rather than start it again"):
            jobs.restart(run_id, where)
        assert jobs.resume(run_id, where) == run_id
    else:
        with pytest.raises(jobs.JobError, match="no checkpoint to resume from; it can be started again"):
            jobs.resume(run_id, where)
        assert jobs.restart(run_id, where) == run_id
    s = jobs.wait(run_id, where, timeout=300)
    assert s.state == "completed", s.detail
    assert not s.restartable and not s.resumable
    assert _record(where / run_id) == runs["reference"]
    starts = [e for e in read_events(where / run_id / "events.jsonl") if e["type"] == "start"]
    assert len(starts) == (2 if checkpoint else 1)  # started again: a fresh history, not the killed attempt's too
