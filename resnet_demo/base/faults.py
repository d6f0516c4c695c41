"""A test seam: kill this process at a named moment, to show that a run survives a kill at any moment.

`point(name)` is called at the moments a kill is most likely to leave something half done. It does nothing
unless the environment variable RESNET_DEMO_KILL_AT names that point when this module is first imported; then
the process sends itself SIGKILL there (no handler runs, no file is closed, as when a machine loses power or the
out-of-memory killer strikes). `RESNET_DEMO_KILL_AT=name:N` kills the N-th time the point is reached (the first
time without `:N`). The variable is read once, so a call costs one comparison when it is not set.

The points (tests/test_faults.py kills at each and resumes):
- `startup`: the settings are checked and the data read; nothing of the run is written yet.
- `step`: after each optimisation step (`step:N` is the N-th step of this process).
- `epoch-evaluation`: in the per-epoch test curve, between two batches.
- `evaluate`: in a whole test-set evaluation (a run's final evaluation), between two batches.
- `write/<file name>`: inside an atomic write, after the new file is written and synced, before it replaces
  the old one (`write/checkpoint.safetensors`, `write/model.safetensors`, `write/metrics.json`, ...).

Not for users: it exists for the tests, and names no point a person would set by hand.
"""
from __future__ import annotations

import os
import signal

ENV = "RESNET_DEMO_KILL_AT"


def _target(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    name, _, count = value.rpartition(":")
    if name and count.isdigit() and int(count) >= 1:
        return name, int(count)
    return value, 1


_TARGET = _target(os.environ.get(ENV))
_reached = 0


def point(name: str) -> None:
    """SIGKILL this process if RESNET_DEMO_KILL_AT names this point (and this is its N-th time); else nothing."""
    global _reached
    if _TARGET is None or name != _TARGET[0]:
        return
    _reached += 1
    if _reached == _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)
