"""One background training job per server, shared by every browser tab: start, watch, stop, resume.

The job is a separate process (`python -m resnet_demo train ... --out <runs>/<id>`), so a page reload, a
second tab or a server restart neither blocks on it nor kills it. Everything a page needs is on disk:
- `<runs>/.active.json` names the running job (pid + run id); created with O_EXCL, so only one job starts;
  a lock whose process has gone is stale and is cleared by whoever looks next;
- `<runs>/<id>/events.jsonl` is the live progress (events.py), `train.log` the process's stdout/stderr,
  `job.json` the command line (for Resume), `STOP` a stop request the trainer checks every step.
No Streamlit here: the Train page and the tests drive the same functions.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import checkpoint as ckpt
from .config import TrainConfig
from .events import Event, last, latest_attempt_end, read_events
from .model import Arch
from .registry import PACKAGE_ROOT, runs_dir
from .storage import atomic_write_json
from .train import STOP_FILE

ACTIVE_FILE = ".active.json"
JOB_FILE = "job.json"
LOG_FILE = "train.log"
LAUNCH_MARK = "=== launched "      # a line in train.log before each (re)start; errors are read after the last one
LAUNCH_GRACE_S = 60.0              # a lock without a pid yet (process being spawned) counts as alive this long

_start_lock = threading.Lock()     # tabs of one server are threads: serialise start/resume
_children: dict[int, subprocess.Popen] = {}  # our own child processes, polled so none lingers as a zombie


class JobError(RuntimeError):
    """A job could not be started, resumed or stopped; the message says why and what to do."""


@dataclass
class RunStatus:
    """One run folder as the UI sees it. state: starting | running | stopping | completed | stopped | failed."""

    run_id: str
    path: Path
    state: str
    events: list[Event] = field(default_factory=list)
    label: str = ""
    message: str = ""          # the end message, or the last error line of the log
    pid: int | None = None

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running", "stopping")

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / ckpt.FILENAME).is_file()

    @property
    def resumable(self) -> bool:
        return not self.active and self.state != "completed" and self.has_checkpoint

    def last(self, kind: str) -> Event | None:
        return last(self.events, kind)

    @property
    def progress(self) -> float:
        """Fraction of the planned steps done (0..1)."""
        start, step = self.last("start"), self.last("step")
        if self.state == "completed":
            return 1.0
        if not start or not start.get("total_steps"):
            return 0.0
        done = max((step or {}).get("step", 0), start.get("resumed_from_step") or 0)
        return min(1.0, done / start["total_steps"])


# ---------------------------------------------------------------- the lock


def runs_path(runs: Path | None = None) -> Path:
    """The runs folder as an absolute path (RESNET_DEMO_RUNS, else ./runs)."""
    return Path(runs or runs_dir()).resolve()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int, run_id: str | None = None) -> bool:
    """True while the process runs (a zombie counts as gone; a pid reused by another program too)."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    try:
        if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        if run_id is not None and run_id not in proc.joinpath("cmdline").read_bytes().decode(errors="replace"):
            return False
    except (OSError, IndexError):
        pass  # no /proc (macOS): trust os.kill
    return True


def _lock_alive(lock: dict) -> bool:
    pid = lock.get("pid")
    if pid is None:  # being spawned right now by a server thread
        return time.time() - lock.get("created", 0) < LAUNCH_GRACE_S and _pid_alive(lock.get("server_pid", -1))
    return _pid_alive(int(pid), lock.get("run_id"))


def active(runs: Path | None = None) -> dict | None:
    """The running job's lock record ({run_id, pid, ...}), or None; a stale lock is removed on the way."""
    path = runs_path(runs) / ACTIVE_FILE
    lock = _read_json(path)
    if lock is None:
        if path.exists() and time.time() - path.stat().st_mtime > LAUNCH_GRACE_S:
            path.unlink(missing_ok=True)  # unreadable and old: a crash mid-write
        return None
    if _lock_alive(lock):
        return lock
    if _read_json(path) == lock:  # still the same stale record
        path.unlink(missing_ok=True)
    return None


def _acquire(runs: Path, run_id: str) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / ACTIVE_FILE
    record = {"run_id": run_id, "pid": None, "server_pid": os.getpid(), "created": time.time()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = active(runs)
            if current is not None:
                raise JobError(f"a training job is already running (run {current['run_id']}); stop it first "
                               f"or watch it on the Train page") from None
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        return
    raise JobError(f"could not take the job lock {path}; if no job is running, delete that file")


def _release(runs: Path, run_id: str) -> None:
    path = runs / ACTIVE_FILE
    lock = _read_json(path)
    if lock is not None and lock.get("run_id") == run_id:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------- start / resume / stop


def new_run_id(arch: Arch, runs: Path | None = None) -> str:
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{arch.name}"
    runs = runs_path(runs)
    run_id, i = base, 1
    while (runs / run_id).exists():
        i += 1
        run_id = f"{base}-{i}"
    return run_id


def _launch(runs: Path, run_id: str, args: list[str]) -> None:
    """Spawn the trainer in its own session (a server reload does not kill it), logging to train.log."""
    out = runs / run_id
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "resnet_demo", "train", *args, "--out", str(out), "--quiet"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    with open(out / LOG_FILE, "a", encoding="utf-8") as log:
        log.write(f"{LAUNCH_MARK}{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n")
        log.flush()
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env)
        except OSError as e:
            raise JobError(f"could not start the training process: {e}") from e
    _children[proc.pid] = proc
    atomic_write_json(runs / ACTIVE_FILE, {"run_id": run_id, "pid": proc.pid, "server_pid": os.getpid(),
                                           "created": time.time()})


def start(cfg: TrainConfig, runs: Path | None = None) -> str:
    """Start a fresh run; returns its id. JobError if a job is running, ValueError for bad settings."""
    arch = cfg.validate()
    runs = runs_path(runs)
    with _start_lock:
        run_id = new_run_id(arch, runs)
        _acquire(runs, run_id)
        try:
            args = cfg.to_args(run_only=True)
            (runs / run_id).mkdir(parents=True, exist_ok=False)
            atomic_write_json(runs / run_id / JOB_FILE, {"args": args, "settings": cfg.run_settings(),
                                                         "created": time.time()})
            _launch(runs, run_id, args)
        except BaseException:
            _release(runs, run_id)
            raise
    return run_id


def _resume_args(out: Path) -> list[str]:
    job = _read_json(out / JOB_FILE)
    if job and isinstance(job.get("args"), list):
        return [str(a) for a in job["args"]]
    cfg = _read_json(out / "config.json")  # a run started from a terminal
    if not cfg:
        raise JobError(f"{out} has no job.json or config.json: cannot tell how it was started")
    return TrainConfig.from_json(cfg).to_args(run_only=True)


def resume(run_id: str, runs: Path | None = None) -> str:
    """Continue a stopped or crashed run from its checkpoint (`train --resume`) as the one job."""
    runs = runs_path(runs)
    out = runs / run_id
    lock = active(runs)
    if lock is not None:
        raise JobError(f"a training job is already running (run {lock['run_id']}); stop it first")
    if not (out / ckpt.FILENAME).is_file():
        raise JobError(f"run {run_id} has no checkpoint to resume from")
    if (out / "metrics.json").is_file():
        raise JobError(f"run {run_id} has already finished")
    with _start_lock:
        _acquire(runs, run_id)
        try:
            (out / STOP_FILE).unlink(missing_ok=True)  # else the trainer would stop again at once
            _launch(runs, run_id, _resume_args(out) + ["--resume"])
        except BaseException:
            _release(runs, run_id)
            raise
    return run_id


def stop(runs: Path | None = None, force: bool = False) -> str | None:
    """Ask the running job to stop after its current step (it saves a checkpoint); returns its run id.

    force=True also sends SIGTERM twice, which interrupts even a job stuck before its first step
    (the trainer turns the second signal into a clean 'interrupted' end; saved checkpoints are kept).
    """
    runs = runs_path(runs)
    lock = active(runs)
    if lock is None:
        return None
    out = runs / lock["run_id"]
    out.mkdir(parents=True, exist_ok=True)
    (out / STOP_FILE).write_text(f"stop requested at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    if force and lock.get("pid"):
        for _ in range(2):
            try:
                os.kill(int(lock["pid"]), signal.SIGTERM)
            except ProcessLookupError:
                break
            time.sleep(0.2)
    return lock["run_id"]


# ---------------------------------------------------------------- reading runs


def last_error(out: Path, fallback: bool = True) -> str:
    """The line of train.log that says why the last launch failed ("error: ..." or a traceback's last line);
    with fallback, the last line of the log when there is no such line."""
    try:
        text = (out / LOG_FILE).read_text(errors="replace")
    except OSError:
        return ""
    text = text.rsplit(LAUNCH_MARK, 1)[-1]
    lines = [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]
    errors = [ln[len("error:"):].strip() for ln in lines if ln.startswith("error:")]
    errors = errors or [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln)]
    if errors:
        return errors[-1]
    return lines[-1] if fallback and lines else ""


def status(run_id: str, runs: Path | None = None, lock: dict | None | bool = False) -> RunStatus:
    """The run's state, read from disk (so a reloaded page or another tab sees the same thing)."""
    runs = runs_path(runs)
    out = runs / run_id
    if lock is False:
        lock = active(runs)
    events = read_events(out / "events.jsonl", cached=True)
    start_ev = last(events, "start")
    label = (start_ev or {}).get("label", "")
    if not label:
        job = _read_json(out / JOB_FILE) or {}
        try:
            label = TrainConfig.from_json(job.get("settings") or _read_json(out / "config.json") or {}).arch.label
        except (TypeError, ValueError):
            label = run_id
    end = latest_attempt_end(events)  # of the latest launch, if it has one
    if lock and lock.get("run_id") == run_id:
        state = "stopping" if (out / STOP_FILE).exists() else ("running" if start_ev and not end else "starting")
        return RunStatus(run_id, out, state, events, label, "", lock.get("pid"))
    if (out / "metrics.json").is_file():
        return RunStatus(run_id, out, "completed", events, label, (end or {}).get("message", "finished"))
    error = last_error(out, fallback=False)  # of the latest launch: newer than an old run's end record
    if end is not None and end.get("status") in ("stopped", "failed") and not (error and end["status"] == "stopped"):
        return RunStatus(run_id, out, end["status"], events, label, end.get("message") or error)
    if error:
        return RunStatus(run_id, out, "failed", events, label, error)
    if (out / STOP_FILE).exists():
        return RunStatus(run_id, out, "stopped", events, label, "stopped before its first training step")
    return RunStatus(run_id, out, "failed", events, label,
                     last_error(out) or "the training process ended without a word (killed, or the server restarted)")


def current(runs: Path | None = None) -> RunStatus | None:
    """The running job's status, or None when no job runs."""
    lock = active(runs)
    return status(lock["run_id"], runs, lock) if lock else None


def list_runs(runs: Path | None = None) -> list[RunStatus]:
    """Every run folder (finished, stopped, failed, running), newest first."""
    runs = runs_path(runs)
    if not runs.is_dir():
        return []
    lock = active(runs)
    folders = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")
               and any((p / f).exists() for f in (JOB_FILE, "config.json", "events.jsonl"))]
    folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [status(p.name, runs, lock) for p in folders]


def wait(run_id: str, runs: Path | None = None, timeout: float = 120.0, until=lambda s: not s.active,
         poll: float = 0.2) -> RunStatus:
    """Poll until `until(status)` holds (default: the job has ended); TimeoutError after `timeout` s."""
    deadline = time.time() + timeout
    while True:
        s = status(run_id, runs)
        if until(s):
            return s
        if time.time() > deadline:
            raise TimeoutError(f"run {run_id} still {s.state} after {timeout:.0f}s")
        time.sleep(poll)
