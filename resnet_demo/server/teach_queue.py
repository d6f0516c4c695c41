"""Fine-tunes on one server, queued: a few at a time, the rest waiting in the order they were asked for, each
one's place in the queue known.

A fine-tune (training/teach.py) takes seconds, so it runs in a thread of the server's own process rather than a
process of its own (starting one, importing torch, costs seconds on a busy 2-core machine): teach() already takes
a stop callback and reports its progress as events, which the ticket collects for the page to draw. Its torch
calls use the server's per-call thread setting (one thread by default, app/threads.py), so two fine-tunes and
the students' predictions share the cores rather than fight over them. `limit` can lower the number running at
once while the machine is busy otherwise (the app: one while a training job runs).

What a tab asks for stays the tab's. The queue holds a waiting ticket only through a weak reference, and a ticket
knows its owner (the tab's state) only weakly: when a tab's session is dropped, its waiting tickets vanish, and a
running fine-tune stops at its next step. `alive`, a callable the app gives, says the same sooner (the tab's
connection has closed). A finished ticket keeps its results; the queue keeps nothing of it.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from resnet_demo.data.cifar import Split
from resnet_demo.nets.model import CifarResNet
from resnet_demo.training.teach import TeachConfig, TeachError, TeachResult, check_images, teach, teach_both

log = logging.getLogger(__name__)

TEACH, COMPARE = "teach", "compare"
WAITING, RUNNING, DONE, STOPPED, FAILED, GONE = "waiting", "running", "done", "stopped", "failed", "gone"
FINAL = (DONE, STOPPED, FAILED, GONE)
MAX_WAITING = 60  # a class of thirty, each with a comparison waiting, and no more
MAX_EVENTS = 20_000  # per ticket: two runs of the longest teach the page offers fit many times over


class QueueFull(RuntimeError):
    """Too many fine-tunes are waiting already; the message says so in words for a student."""


@dataclass(eq=False)
class Ticket:
    """One fine-tune asked for: its inputs until it runs, then its events and results. `results`: by run tag
    ("trained", and "scratch" for a comparison; "taught" for a single teach)."""

    id: int
    kind: str
    data: Split | None
    config: TeachConfig
    base: CifarResNet | None
    owner: weakref.ref
    alive: Callable[[], bool]
    state: str = WAITING
    events: list[dict] = field(default_factory=list)
    results: dict[str, TeachResult] = field(default_factory=dict)
    error: str | None = None
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def stop(self) -> None:
        """Ask a running fine-tune to stop before its next step (a waiting one is taken out by TeachQueue.cancel)."""
        self._stop.set()

    @property
    def done(self) -> bool:
        return self.state in FINAL

    def wanted(self) -> bool:
        """Whether anyone still waits for this fine-tune: not stopped, its tab's state alive and connected."""
        if self._stop.is_set() or self.owner() is None:
            return False
        try:
            return bool(self.alive())
        except Exception:  # noqa: BLE001 - a liveness probe that fails must not kill the worker
            return True

    def record(self, event: dict) -> None:
        if len(self.events) < MAX_EVENTS:
            self.events.append(event)


class TeachQueue:
    """The server's one queue. `workers`: fine-tunes at once; `limit()`, asked at each start, may lower it."""

    def __init__(self, workers: int = 2, limit: Callable[[], int] | None = None, max_waiting: int = MAX_WAITING):
        if workers < 1:
            raise ValueError("a teach queue needs at least one worker")
        self.workers, self.max_waiting = workers, max_waiting
        self._limit = limit
        self._lock = threading.RLock()
        self._waiting: deque[weakref.ref[Ticket]] = deque()
        self._running: set[Ticket] = set()
        self._ids = itertools.count(1)

    def submit(self, data: Split, config: TeachConfig, owner: object, compare: bool = False,
               base: CifarResNet | None = None, alive: Callable[[], bool] | None = None) -> Ticket:
        """Queue a fine-tune of `data` (checked first: TeachError for images or settings that cannot be taught);
        QueueFull when too many wait. The caller keeps the ticket (and `owner`) alive for as long as it wants it."""
        config.validate()
        check_images(data, config.holdout)
        with self._lock:
            self._prune()
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self._waiting)} fine-tunes are waiting already; try again in a minute.")
            ticket = Ticket(next(self._ids), COMPARE if compare else TEACH, data, config, base, weakref.ref(owner),
                            alive or (lambda: True))
            self._waiting.append(weakref.ref(ticket))
            self._dispatch()
        return ticket

    def position(self, ticket: Ticket) -> int:
        """0 while it runs (or is over), else its place among the fine-tunes waiting: 1 is next."""
        with self._lock:
            self._dispatch()  # a slot may have opened (a training job ended) since the last start
            if ticket.state != WAITING:
                return 0
            live = [t for t in (r() for r in self._waiting) if t is not None and t.state == WAITING]
            return live.index(ticket) + 1 if ticket in live else 0

    def cancel(self, ticket: Ticket) -> None:
        """Take a waiting ticket out (it ends "stopped"), or stop a running one before its next step."""
        ticket.stop()
        with self._lock:
            if ticket.state == WAITING:
                self._finish(ticket, STOPPED)
            self._prune()

    def counts(self) -> tuple[int, int]:
        """(running, waiting) now."""
        with self._lock:
            self._prune()
            return len(self._running), len(self._waiting)

    def slots(self) -> int:
        """How many may run at once now."""
        try:
            limit = self._limit() if self._limit is not None else self.workers
        except Exception:  # noqa: BLE001 - a probe of the machine that fails leaves the configured number
            log.exception("the teach queue's limit could not be read")
            limit = self.workers
        return max(1, min(self.workers, int(limit)))

    # ------------------------------------------------------------------ inside the lock

    def _prune(self) -> None:
        """Drop waiting tickets whose tab has gone (or that were cancelled)."""
        keep: deque[weakref.ref[Ticket]] = deque()
        for ref in self._waiting:
            t = ref()
            if t is None or t.state != WAITING:
                continue
            if not t.wanted():
                self._finish(t, GONE if not t._stop.is_set() else STOPPED)
                continue
            keep.append(ref)
        self._waiting = keep

    def _dispatch(self) -> None:
        self._prune()
        while self._waiting and len(self._running) < self.slots():
            ticket = self._waiting.popleft()()
            if ticket is None or ticket.state != WAITING:
                continue
            ticket.state, ticket.started = RUNNING, time.monotonic()
            self._running.add(ticket)
            threading.Thread(target=self._work, args=(ticket,), name=f"teach-{ticket.id}", daemon=True).start()

    @staticmethod
    def _finish(ticket: Ticket, state: str, error: str | None = None) -> None:
        ticket.state, ticket.error, ticket.finished = state, error, time.monotonic()
        ticket.data = ticket.base = None  # the images and the start network go with the work

    # ------------------------------------------------------------------ a worker thread

    def _work(self, ticket: Ticket) -> None:
        state, error = FAILED, None
        try:
            ticket.results = self._teach(ticket)
            stopped = any(r.status != "completed" for r in ticket.results.values())
            state = GONE if ticket.owner() is None else STOPPED if stopped else DONE
            if state == GONE:
                ticket.results = {}
        except TeachError as e:
            error = str(e)
        except Exception:  # noqa: BLE001 - a worker must end its ticket whatever happens, and say so
            log.exception("fine-tune %d failed", ticket.id)
            error = "the fine-tune failed unexpectedly; the server's log has the details. Try again."
        finally:
            with self._lock:
                self._finish(ticket, state, error)
                self._running.discard(ticket)
                self._dispatch()

    @staticmethod
    def _teach(ticket: Ticket) -> dict[str, TeachResult]:
        stop = lambda: not ticket.wanted()  # noqa: E731
        if ticket.kind == COMPARE:
            return teach_both(ticket.data, ticket.config, ticket.record, stop, ticket.base)
        return {"taught": teach(ticket.data, ticket.config, ticket.record, stop, ticket.base, tag="taught")}
