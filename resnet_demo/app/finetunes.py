"""The Teach page's side of the server: its one fine-tune queue, who may use it, and the limits a fine-tune must
keep (docs/CLASSROOM.md, "Teaching new classes").

- The queue (server/teach_queue.py) is one per server, behind st.cache_resource: RESNET_DEMO_TEACH_WORKERS
  fine-tunes at once (default 2), one while a training job from the Train page runs, since that job already
  keeps every core busy. A tab's place in the queue is shown on its page.
- Students may teach: the lesson is theirs. With a teacher password set, the teacher can lock Teach, as Train is
  locked, from the Teach page (server-wide, at once for every tab); RESNET_DEMO_TEACH=teacher starts a server
  locked. Every action that costs the server (Train, Compare) passes `may_teach` on the server when it runs, so
  a disabled button that is clicked anyway (a forged message) does nothing.
- The training limits hold for a fine-tune as for a job: RESNET_DEMO_MAX_DEPTH and RESNET_DEMO_MAX_BATCH, and its
  memory (weights, gradients, momentum, the activations of a batch) must fit what the server allows.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from resnet_demo.nets.model import Arch
from resnet_demo.server.teach_queue import TeachQueue
from resnet_demo.training import budget
from resnet_demo.training.config import TrainConfig

from . import live, teacher

log = logging.getLogger("resnet_demo.app")

ENV_WORKERS = "RESNET_DEMO_TEACH_WORKERS"
ENV_TEACH = "RESNET_DEMO_TEACH"
DEFAULT_WORKERS, MAX_WORKERS = 2, 16
OPEN, TEACHER = "open", "teacher"
LOCKED = ("The teacher has locked Teach on this server: only the teacher can train or compare here now. You can "
          "still add images, save and open projects, and use a model taught before.")


def workers() -> int:
    """Fine-tunes at once: RESNET_DEMO_TEACH_WORKERS (1 to 16), else DEFAULT_WORKERS (said in the log)."""
    return budget.env_count(ENV_WORKERS, DEFAULT_WORKERS, MAX_WORKERS)


@st.cache_resource(show_spinner=False)
def _queue(n: int) -> TeachQueue:
    poller = live.poller()  # the one reader of the runs folder, read from the queue's own threads too
    return TeachQueue(workers=n, limit=lambda: 1 if poller.active() is not None else n)


def queue() -> TeachQueue:
    """The server's one queue of fine-tunes."""
    return _queue(workers())


class _Policy:
    """Whether students may teach: one switch for the whole server."""

    def __init__(self, open_to_students: bool):
        self.open = open_to_students
        self.lock = threading.Lock()


@st.cache_resource(show_spinner=False)
def _policy() -> _Policy:
    wanted = (os.environ.get(ENV_TEACH) or OPEN).strip().lower()
    if wanted not in (OPEN, TEACHER):
        log.warning("%s must be %r or %r, not %r; Teach is open to students", ENV_TEACH, OPEN, TEACHER, wanted)
    return _Policy(wanted != TEACHER)


def students_may_teach() -> bool:
    """True when anyone may teach here: Teach is open, or no teacher password is set at all."""
    return _policy().open or not teacher.password_set()


def set_students_may_teach(value: bool) -> None:
    """The teacher's switch (checked here, on the server, whoever calls it)."""
    if not teacher.may_act("switching who may teach"):
        return
    with _policy().lock:
        _policy().open = bool(value)
    log.info("Teach is now %s", "open to students" if value else "the teacher's only")


def may_teach(what: str) -> bool:
    """The first line of every Teach action that costs the server: True when this tab may, else False after
    saying why."""
    return students_may_teach() or teacher.may_act(what)


def can_teach() -> bool:
    """Whether this tab's Train and Compare buttons are enabled (may_teach checks again on the click)."""
    return students_may_teach() or teacher.can_control()


def limits(arch: Arch, batch_size: int) -> str | None:
    """Why a fine-tune of this network at this batch breaks the server's training limits, or None."""
    cfg = TrainConfig(depth=arch.depth, plain=arch.plain, shortcut=arch.shortcut, batch_size=batch_size)
    try:
        budget.check_settings(cfg)
        need = budget.estimate(cfg, "cpu")
        room = budget.allowance("cpu")
    except ValueError as e:
        return str(e)
    fine_tune = need.model + need.activations  # the server's own process: no second framework, no CIFAR-10
    if fine_tune > room.bytes:
        return (f"fine-tuning {arch.label} at batch {batch_size} needs about {fine_tune / 1e9:.1f} GB of memory; "
                f"this server allows {room.bytes / 1e9:.1f} GB now ({room.reason})")
    return None


def alive_check() -> Callable[[], bool]:
    """A probe that says whether this tab is still connected (always True outside a live server)."""
    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists():
        return lambda: True
    instance, session = runtime.get_instance(), ctx.session_id
    return lambda: instance.is_active_session(session)
