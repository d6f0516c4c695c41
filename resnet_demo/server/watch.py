"""One reading of the runs folder per interval, shared by every browser tab that watches the training job.

Why: each tab on the Train page asks for the job's state once a second. Asked separately, thirty tabs cost thirty
reads of the job lock, the event file and the run's records every second (and the page's charts thirty times
over). Through one Poller the server reads once per interval, whatever the number of tabs, and they all get the
same snapshot. The RunStatus objects it hands out are shared, so a reader must not change them.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from resnet_demo.server import jobs

FORGET_AFTER_S = 60.0  # an answer nobody asked for again this long is dropped (a run a tab looked at once)


class Poller:
    """Answers from at most one read per `interval` seconds for each question, for any number of threads.

    A question asked while its answer is being read waits for that read instead of starting another.
    """

    def __init__(self, runs: Path | None = None, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.runs = jobs.runs_path(runs)
        self.interval = interval
        self.clock = clock
        self.reads = 0  # how many times the folder was actually read (for tests and benchmarks)
        self._lock = threading.Lock()
        self._answers: dict[tuple, tuple[float, object]] = {}

    def _get(self, key: tuple, read: Callable[[], object]):
        with self._lock:
            now = self.clock()
            at, value = self._answers.get(key, (None, None))
            if at is None or now - at >= self.interval:
                value = read()
                self.reads += 1
                self._answers[key] = (now, value)
                for old in [k for k, (t, _) in self._answers.items() if now - t > FORGET_AFTER_S]:
                    del self._answers[old]
            return value

    def current(self) -> jobs.RunStatus | None:
        """The running job's status, or None (jobs.current)."""
        return self._get(("current",), lambda: jobs.current(self.runs))

    def active(self) -> dict | None:
        """The running job's lock record, or None (jobs.active)."""
        run = self.current()
        return {"run_id": run.run_id, "pid": run.pid} if run is not None else None

    def status(self, run_id: str) -> jobs.RunStatus:
        """One run's status (jobs.status); the running job's comes from the same read as current()."""
        run = self.current()
        if run is not None and run.run_id == run_id:
            return run
        return self._get(("status", run_id), lambda: jobs.status(run_id, self.runs))

    def list_runs(self) -> list[jobs.RunStatus]:
        """Every run, newest first (jobs.list_runs)."""
        return self._get(("list",), lambda: jobs.list_runs(self.runs))

    def refresh(self) -> None:
        """Forget every answer: after this server started, stopped or resumed a job, the next question reads anew."""
        with self._lock:
            self._answers.clear()
