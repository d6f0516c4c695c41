"""One background training job per server, shared by every browser tab: start, watch, stop, resume.

The job is a separate process (`python -m resnet_demo train ... --out <runs>/<id>`), so a page reload, a
second tab or a server restart neither blocks on it nor kills it. Everything a page needs is on disk:
- `<runs>/.active.json` names the running job (pid + run id); created with O_EXCL, so only one job starts;
  a lock whose process has gone is stale and is cleared by whoever looks next;
- `<runs>/<id>/events.jsonl` is the live progress (events.py), `train.log` the process's stdout/stderr,
  `job.json` the command line (for Resume), `STOP` a stop request the trainer checks every step.
A runs folder that is full or not writable gives a JobError that says so, without the server's paths; the
details go to the server's log. Likewise a run that failed is described in a person's words (`RunStatus.message`,
never an exception's text or a server path); the line of its train.log behind it is `RunStatus.detail`.
No Streamlit here: the Train page and the tests drive the same functions.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from resnet_demo.base.storage import PROJECT_ROOT, atomic_write_json
from resnet_demo.nets.model import Arch
from resnet_demo.store.events import Event, last, latest_attempt_end, read_events
from resnet_demo.store.registry import runs_dir
from resnet_demo.training import budget
from resnet_demo.training import checkpoint as ckpt
from resnet_demo.training.config import TrainConfig
from resnet_demo.training.train import STOP_FILE

ACTIVE_FILE = ".active.json"
JOB_FILE = "job.json"
LOG_FILE = "train.log"
TEACHER_PASSWORD_ENV = "RESNET_DEMO_TEACHER_PASSWORD"  # the app's; never passed on to a trainer
LAUNCH_MARK = "=== launched "      # a line in train.log before each (re)start; errors are read after the last one
LAUNCH_GRACE_S = 60.0              # a lock without a pid yet (process being spawned) counts as alive this long
UNREADABLE_GRACE_S = 5.0           # an unreadable lock is being written this long at most; older, it is debris

log = logging.getLogger("resnet_demo.server.jobs")

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
    message: str = ""          # for the page: how it ended, in a person's words, without a server path
    pid: int | None = None
    detail: str = ""           # for the log and the command line: the end record's or train.log's own words

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running", "stopping")

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / ckpt.FILENAME).is_file()

    @property
    def resumable(self) -> bool:
        return not self.active and self.state != "completed" and self.has_checkpoint

    @property
    def restartable(self) -> bool:
        """Ended before its first checkpoint (killed, crashed, stopped or refused at once): nothing to resume, but it
        can start again in its own folder with the same settings (`restart`)."""
        return (not self.active and self.state != "completed" and not self.has_checkpoint
                and (self.path / JOB_FILE).is_file())

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
        with contextlib.suppress(OSError):
            if path.exists() and time.time() - path.stat().st_mtime > UNREADABLE_GRACE_S:
                path.unlink(missing_ok=True)  # unreadable and old: a server that died mid-write
        return None
    if _lock_alive(lock):
        return lock
    if _read_json(path) == lock:  # still the same stale record
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    return None


def _acquire(runs: Path, run_id: str) -> None:
    """Take the job lock for `run_id`: created with O_EXCL and written at once, or not left behind at all."""
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / ACTIVE_FILE
    record = json.dumps({"run_id": run_id, "pid": None, "server_pid": os.getpid(), "created": time.time()})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = active(runs)
            if current is not None:
                raise JobError(f"a training job is already running (run {current['run_id']}); stop it first "
                               f"or watch it on the Train page") from None
            continue
        try:
            os.write(fd, record.encode())
        except BaseException:  # an empty lock would block every Start until it is old enough to clear
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        finally:
            os.close(fd)
        return
    raise JobError("another training job is being started at this moment; try again in a few seconds")


def _release(runs: Path, run_id: str) -> None:
    path = runs / ACTIVE_FILE
    lock = _read_json(path)
    if lock is not None and lock.get("run_id") == run_id:
        with contextlib.suppress(OSError):  # what cannot be removed is cleared as stale later
            path.unlink(missing_ok=True)


def _storage_error(action: str, e: OSError) -> JobError:
    """A failure to write the runs folder, said in a person's words: no server path, no raw exception text
    (those go to the server's log)."""
    log.warning("could not %s", action, exc_info=e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the server's disk is full. Free some space (old runs can go) and try again"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "the server may not write to its runs folder. Whoever runs the server can fix its permissions"
    else:
        why = "the runs folder could not be written. The server's log has the details"
    return JobError(f"Could not {action}: {why}.")


@contextlib.contextmanager
def _storage(action: str):
    try:
        yield
    except OSError as e:
        raise _storage_error(action, e) from None


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
    # the server checked the job's memory before it took the lock (budget.check): the trainer need not again
    cmd = [sys.executable, "-m", "resnet_demo", "train", *args, "--out", str(out), "--quiet", "--ignore-memory-limit"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for secret in (TEACHER_PASSWORD_ENV, "teacher_password"):  # Streamlit copies secrets.toml's into the environment
        env.pop(secret, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    with open(out / LOG_FILE, "a", encoding="utf-8") as log_file:
        log_file.write(f"{LAUNCH_MARK}{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n")
        log_file.flush()
        try:
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env)
        except OSError:
            log.warning("could not start %s", cmd, exc_info=True)
            raise JobError("Could not start the training process. The server's log has the details.") from None
    _children[proc.pid] = proc
    try:
        atomic_write_json(runs / ACTIVE_FILE, {"run_id": run_id, "pid": proc.pid, "server_pid": os.getpid(),
                                               "created": time.time()})
    except BaseException:  # a trainer the lock does not name could run beside a second job: it goes
        proc.kill()
        proc.wait()
        raise


def start(cfg: TrainConfig, runs: Path | None = None) -> str:
    """Start a fresh run; returns its id. JobError if a job is running, ValueError for bad settings, budget.TooBig
    (a ValueError too) for a job this machine or server cannot take."""
    arch = cfg.validate()
    budget.check(cfg)
    runs = runs_path(runs)
    with _start_lock, _storage("start the training job"):
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
        raise JobError(f"run {out.name} has no job.json or config.json: cannot tell how it was started")
    return TrainConfig.from_json(cfg).to_args(run_only=True)


def resume(run_id: str, runs: Path | None = None) -> str:
    """Continue a stopped or crashed run from its checkpoint (`train --resume`) as the one job."""
    return _relaunch(run_id, runs_path(runs), restart=False)


def restart(run_id: str, runs: Path | None = None) -> str:
    """Start a run that ended before its first checkpoint again, in its folder, with the settings it was started
    with (`train --resume` with no checkpoint starts from scratch, with a fresh history) as the one job."""
    return _relaunch(run_id, runs_path(runs), restart=True)


def _relaunch(run_id: str, runs: Path, restart: bool) -> str:
    out = runs / run_id
    lock = active(runs)
    if lock is not None:
        raise JobError(f"a training job is already running (run {lock['run_id']}); stop it first")
    if not restart and not (out / ckpt.FILENAME).is_file():
        raise JobError(f"run {run_id} has no checkpoint to resume from; it can be started again instead")
    if restart and (out / ckpt.FILENAME).is_file():
        raise JobError(f"run {run_id} has a checkpoint: resume it rather than start it again")
    if restart and not (out / JOB_FILE).is_file():
        raise JobError(f"run {run_id} was not started from this page: start a new run instead")
    if (out / "metrics.json").is_file():
        raise JobError(f"run {run_id} has already finished")
    budget.check(TrainConfig.from_args(_resume_args(out) + ["--resume", "--out", str(out)]))
    action = "start the training job again" if restart else "resume the training job"
    with _start_lock, _storage(action):
        _acquire(runs, run_id)
        try:
            (out / STOP_FILE).unlink(missing_ok=True)  # else the trainer would stop again at once
            if restart:  # the trainer starts a fresh history too; gone now, no page shows the old one meanwhile
                (out / "events.jsonl").unlink(missing_ok=True)
            _launch(runs, run_id, _resume_args(out) + ["--resume"])
        except BaseException:
            _release(runs, run_id)
            raise
    return run_id


def stop(runs: Path | None = None, force: bool = False) -> str | None:
    """Ask the running job to stop after its current step (it saves a checkpoint); returns its run id.

    force=True also sends SIGTERM twice, which interrupts even a job stuck before its first step
    (the trainer turns the second signal into a clean 'interrupted' end; saved checkpoints are kept).
    Where no STOP file can be written (a full disk), one SIGTERM asks the same: the trainer takes it as a stop.
    """
    runs = runs_path(runs)
    lock = active(runs)
    if lock is None:
        return None
    pid = int(lock["pid"]) if lock.get("pid") else None
    out = runs / lock["run_id"]
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / STOP_FILE).write_text(f"stop requested at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    except OSError as e:
        if pid is None:
            raise _storage_error("stop the training job", e) from None
        log.warning("could not write the STOP file; asking with SIGTERM instead", exc_info=True)
        _signal(pid, 2 if force else 1)
    else:
        if force and pid is not None:
            _signal(pid, 2)
    return lock["run_id"]


def _signal(pid: int, times: int) -> None:
    for i in range(times):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if i + 1 < times:
            time.sleep(0.2)


# ---------------------------------------------------------------- reading runs


def last_error(out: Path) -> str:
    """The line of train.log that says why the last launch failed: "error: ...", an argparse usage error, or an
    exception's line at the end of a traceback; "" when there is none. It may name the server's folders: the
    page shows `for_people` of it."""
    try:
        text = (out / LOG_FILE).read_text(errors="replace")
    except OSError:
        return ""
    text = text.rsplit(LAUNCH_MARK, 1)[-1]
    lines = [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]
    errors = [ln.split("error:", 1)[1].strip() for ln in lines if ln.startswith("error:") or ": error: " in ln]
    errors = errors or [ln for ln in lines if _EXCEPTION_LINE.match(ln)]
    return errors[-1] if errors else ""


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_.]*(Error|Exception)\b")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~/-])(?:/[\w.+@~-]+)+/?|\b[A-Za-z]:\\[^\s'\",;]+")
DATA_MISSING = ("The full CIFAR-10 was not found on the server. Get it with the Download button on this page (or "
                "`python -m resnet_demo download` on the server), or train on fewer images: the classroom preset "
                "trains on the built-in subset.")
INTERNAL_ERROR = ("the training process stopped with an internal error; the teacher can find the details in the "
                  "run's train.log.")
_RAW_ERRORS = (  # what an exception's own text means, for a person: the first pattern found wins
    (r"No space left|Disk quota|\[Errno (28|122)\]|disk is full",
     "the server's disk is full. Free some space (old runs can go), then resume the run or start it again."),
    (r"Permission denied|Read-only file system|Operation not permitted|\[Errno (1|13|30)\]",
     "the training process may not write to its run folder. Whoever runs the server can fix the folder's "
     "permissions; then resume the run or start it again."),
    (r"out of memory|OutOfMemoryError|MemoryError|allocate memory",
     "the training process ran out of memory. Try a smaller batch size or a shallower network."),
    (r"CIFAR|cifar|\.npz|data_batch|DataError",
     "the training data could not be read. The teacher can download the full CIFAR-10 again (the Download "
     "button, or `python -m resnet_demo download` on the server)."),
)


def for_people(text: str, out: Path) -> str:
    """How a run ended, said so that anyone may read it on a page: an exception's text (a traceback's last line, a
    raw OS error) becomes a sentence saying what to do (disk full, permissions, memory, data, else an internal
    error whose details are in train.log); a message the trainer wrote for people keeps its words, with the run's
    folder and any other server path left out."""
    if not text:
        return text
    if "The full CIFAR-10 was not found" in text:
        return DATA_MISSING  # the trainer's own message lists the server's folders it looked in
    if _EXCEPTION_LINE.match(text) or "[Errno" in text:
        return next((said for pattern, said in _RAW_ERRORS if re.search(pattern, text)), INTERNAL_ERROR)
    return _ABSOLUTE_PATH.sub(lambda m: _path_for_people(m.group(0), out), text)


def _path_for_people(path: str, out: Path) -> str:
    inside = path.rstrip("/").removeprefix(str(out).rstrip("/"))
    if inside == "":
        return "this run's folder"
    if inside != path.rstrip("/") and inside.startswith("/"):
        return inside.lstrip("/")  # a file of the run: its name alone
    return "a folder on the server"


def _label(out: Path, run_id: str, events: list[Event]) -> str:
    label = (last(events, "start") or {}).get("label", "")
    if label:
        return label
    job = _read_json(out / JOB_FILE) or {}
    try:
        return TrainConfig.from_json(job.get("settings") or _read_json(out / "config.json") or {}).arch.label
    except (TypeError, ValueError):
        return run_id


def _vanished(out: Path, events: list[Event]) -> str:
    """What to say of a trainer that went away without an end record: kill -9, the out-of-memory killer, a crash
    of the interpreter. Its log's last line is only what it printed last, not why it ended.

    The step is the checkpoint file's, which a resume starts from: a checkpoint is announced after its background
    write, so a kill in between leaves a file one newer than the last event. The event serves where the file
    cannot be read."""
    step = None
    if (out / ckpt.FILENAME).is_file():
        with contextlib.suppress(Exception):
            step = ckpt.read_state(out / ckpt.FILENAME)["step"]
    if step is None:
        step = (last(events, "checkpoint") or {}).get("step")
    if step is None:
        return "the training process ended without finishing (killed or crashed) before its first checkpoint"
    return (f"the training process ended without finishing (killed or crashed); its last checkpoint at step "
            f"{step:,} can be resumed")


def status(run_id: str, runs: Path | None = None, lock: dict | None | bool = False) -> RunStatus:
    """The run's state, read from disk (so a reloaded page or another tab sees the same thing)."""
    runs = runs_path(runs)
    out = runs / run_id
    if lock is False:
        lock = active(runs)
    events = read_events(out / "events.jsonl", cached=True)
    label = _label(out, run_id, events)
    end = latest_attempt_end(events)  # of the latest launch, if it has one
    if lock and lock.get("run_id") == run_id:
        started = last(events, "start") is not None and not end
        state = "stopping" if (out / STOP_FILE).exists() else ("running" if started else "starting")
        return RunStatus(run_id, out, state, events, label, "", lock.get("pid"))
    if (out / "metrics.json").is_file():
        said = (end or {}).get("message", "finished")
        return RunStatus(run_id, out, "completed", events, label, for_people(said, out), detail=said)
    error = last_error(out)  # of the latest launch: newer than an old run's end record
    if end is not None and end.get("status") in ("stopped", "failed") and not (error and end["status"] == "stopped"):
        said = end.get("message") or error
        return RunStatus(run_id, out, end["status"], events, label, for_people(said, out), detail=said)
    if error:
        return RunStatus(run_id, out, "failed", events, label, for_people(error, out), detail=error)
    if (out / STOP_FILE).exists() and last(events, "start") is None:
        return RunStatus(run_id, out, "stopped", events, label, "stopped before its first training step")
    return RunStatus(run_id, out, "failed", events, label, _vanished(out, events))


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
    try:
        folders = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and any((p / f).exists() for f in (JOB_FILE, "config.json", "events.jsonl"))]
        folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:  # an unreadable runs folder lists nothing; the server's log says why
        log.warning("could not list the runs folder", exc_info=True)
        return []
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
