"""Training progress as a stream of plain records, shared by the CLI, the app and the shipped histories.

An event is a dict with a "type" key: "start", "step", "epoch", "checkpoint", "end". They are appended
to a JSONL file one line at a time and flushed, so a reader (another process, another browser tab) never
sees half a record, and a crash loses at most the line being written.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Iterable, Iterator

Event = dict
Listener = Callable[[Event], None]

# Fields by type, for readers; writers may add more.
#   start:      config, arch, params, total_steps, steps_per_epoch, device, world_size, resumed_from_step,
#               momentum_restarted (resumed from a checkpoint that `park --drop-momentum` wrote)
#   step:       step, epoch (float, fractional), loss, acc, lr, images_per_s, eta_s, elapsed_s
#   epoch:      epoch, step, train_loss, train_acc, test_loss, test_acc, lr, elapsed_s, eta_s
#   checkpoint: epoch, step, path
#   end:        status ("completed" | "stopped" | "failed"), message, elapsed_s, step


class EventLog:
    """Append-only JSONL writer; usable as a listener."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        self._f.write(json.dumps(event, separators=(",", ":"), allow_nan=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_events(path: str | os.PathLike) -> list[Event]:
    """Every complete record in the file; a trailing partial line (a writer mid-write) is ignored."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in text.split("\n")[:-1]:  # the last piece is "" or a partial line
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


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


def last(events: Iterable[Event], kind: str) -> Event | None:
    found = None
    for e in events:
        if e.get("type") == kind:
            found = e
    return found


def iter_type(events: Iterable[Event], kind: str) -> Iterator[Event]:
    return (e for e in events if e.get("type") == kind)
