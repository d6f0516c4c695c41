"""Training progress as a stream of plain records, shared by the CLI, the app and the shipped histories.

An event is a dict with a "type" key: "start", "step", "epoch", "checkpoint", "phase", "end". They are appended
to a JSONL file one line at a time and flushed, so a reader (another process, another browser tab) never
sees half a record, and a crash loses at most the line being written. This module is the stream's only
writer and reader: a live log (EventLog), a whole history at once (write_events), a full read (read_events)
and a cheap repeated read of a growing file (read_events(path, cached=True)).
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator

from resnet_demo.base.storage import atomic_write_bytes

Event = dict
Listener = Callable[[Event], None]

# Fields by type, for readers; writers may add more.
#   start:      config, arch, label, params, total_steps, steps_per_epoch, epochs, batch_size, train_images,
#               test_images, device, world_size, resumed_from_step, time
#               (older histories may also hold momentum_restarted)
#   step:       step, epoch (float, fractional), loss, acc, lr, images_per_s, eta_s, elapsed_s, total_steps
#   epoch:      epoch, step, train_loss, train_acc, test_loss, test_acc, lr, elapsed_s, eta_s
#               (test_loss and test_acc are null after an epoch whose test curve was not evaluated: --eval-every)
#   checkpoint: epoch, batch, step, path; emitted once the file is on disk (it is written in the background)
#   phase:      phase ("final_evaluation": the last step is done, the whole test set is being evaluated; "end"
#               follows), step, test_images. Progress readers show it instead of a step count at its ETA of 0 s.
#   end:        status ("completed" | "stopped" | "failed"), message, elapsed_s, step (completed: test_accuracy)


def _line(event: Event) -> str:
    return json.dumps(event, separators=(",", ":"), allow_nan=True) + "\n"


class EventLog:
    """Append-only JSONL writer; usable as a listener."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        self._f.write(_line(event))
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def write_events(path: str | os.PathLike, events: Iterable[Event]) -> None:
    """A whole history as one file, written atomically (a shipped model's history)."""
    atomic_write_bytes(path, "".join(map(_line, events)).encode())


def _parse(data: bytes) -> list[Event]:
    """The records of whole lines; a line that is not JSON (a crash mid-write long ago) is skipped."""
    out = []
    for line in data.decode("utf-8", errors="replace").split("\n"):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


class _Follower:
    """Remembers how far each file was read, so reading a growing file again reads only its new bytes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._files: dict[str, tuple[int, int, list[Event]]] = {}  # path -> (inode, offset, events)

    def read(self, path: str | os.PathLike) -> list[Event]:
        key = os.fspath(path)
        try:
            st = os.stat(key)
        except FileNotFoundError:
            self._files.pop(key, None)
            return []
        with self._lock:
            inode, offset, events = self._files.get(key, (st.st_ino, 0, []))
            if inode != st.st_ino or st.st_size < offset:  # replaced or truncated: a fresh run
                offset, events = 0, []
            if st.st_size > offset:
                with open(key, "rb") as f:
                    f.seek(offset)
                    chunk = f.read(st.st_size - offset)
                complete = chunk.rfind(b"\n") + 1  # a trailing partial line waits for the next read
                events = events + _parse(chunk[:complete])
                offset += complete
            self._files[key] = (st.st_ino, offset, events)
            return events


_follower = _Follower()


def read_events(path: str | os.PathLike, cached: bool = False) -> list[Event]:
    """Every complete record in the file; a trailing partial line (a writer mid-write) is ignored.

    cached=True reads only what was appended since the last cached read of this path (a page polling a live
    run every second); the list returned is shared, so it must not be changed.
    """
    if cached:
        return _follower.read(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return _parse(data[:data.rfind(b"\n") + 1])


def broadcast(listeners: Iterable[Listener | None]) -> Listener:
    fns = [fn for fn in listeners if fn is not None]

    def emit(event: Event) -> None:
        for fn in fns:
            fn(event)

    return emit


def epochs(events: Iterable[Event]) -> list[Event]:
    """The per-epoch rows of a history, later records replacing earlier ones (a resumed run repeats none)."""
    by_epoch: dict[int, Event] = {}
    for e in events:
        if e.get("type") == "epoch":
            by_epoch[int(e["epoch"])] = e
    return [by_epoch[k] for k in sorted(by_epoch)]


def latest_run(events: list[Event]) -> list[Event]:
    """The records since the last fresh start: a resumed attempt's start has a resumed_from_step."""
    starts = [i for i, e in enumerate(events) if e.get("type") == "start" and not e.get("resumed_from_step")]
    return events[starts[-1]:] if starts else events


def last(events: list[Event], kind: str) -> Event | None:
    """The latest record of one type."""
    return next((e for e in reversed(events) if e.get("type") == kind), None)


def current_phase(events: list[Event]) -> Event | None:
    """The "phase" record the run is in now (its final evaluation, say), or None while it trains or once it ended."""
    for e in reversed(events):
        kind = e.get("type")
        if kind == "phase":
            return e
        if kind in ("start", "step", "end"):
            return None
    return None


def latest_attempt_end(events: list[Event]) -> Event | None:
    """The end record of the latest start (a resumed attempt counts as a start), or None while it has none."""
    for e in reversed(events):
        if e.get("type") == "start":
            return None
        if e.get("type") == "end":
            return e
    return None


def iter_type(events: Iterable[Event], kind: str) -> Iterator[Event]:
    return (e for e in events if e.get("type") == kind)
