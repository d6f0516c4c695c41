"""Who may start, stop and resume training (and do anything else that changes the server) on this server, and
whether a job fits before it starts.

A teacher password, from Streamlit's secrets (`teacher_password` in .streamlit/secrets.toml) or else the
RESNET_DEMO_TEACHER_PASSWORD environment variable, makes the training controls the teacher's: a browser tab is
unlocked by typing the password in the sidebar, and every other tab watches. Without one, anyone who reaches the
server may train, as on a laptop of one's own. The password is only compared (hmac.compare_digest); it is never
shown, put in a URL or logged, and a session keeps a flag, not the password. Wrong guesses are slowed down: one
second each, one at a time for the whole server, and a tab that has guessed wrong five times waits half a minute.
Every action that changes what the server does or holds, on any page, begins with `may_act()`: a disabled button
only asks the browser, this asks the server. See docs/CLASSROOM.md.
"""
from __future__ import annotations

import hmac
import logging
import os
import threading
import time

import streamlit as st

from resnet_demo.server import jobs
from resnet_demo.training import budget
from resnet_demo.training.config import TrainConfig

from . import live

log = logging.getLogger("resnet_demo.app")

UNLOCKED = "teacher_unlocked"
FAILURES = "teacher_failures"    # (wrong guesses in a row, time of the last) in this session
WRONG_GUESS_DELAY_S = 1.0
LOCKOUT = (5, 30.0)              # after this many wrong guesses in a row, a session waits this many seconds
_guesses = threading.Lock()      # wrong guesses are answered one at a time, server-wide


def _password() -> str | None:
    try:
        secret = st.secrets.get("teacher_password")
    except Exception:  # noqa: BLE001 - no secrets file (Streamlit raises), or an unreadable one: use the environment
        secret = None
    secret = secret or os.environ.get(jobs.TEACHER_PASSWORD_ENV)
    return str(secret) if secret else None


def password_set() -> bool:
    return _password() is not None


def can_control() -> bool:
    """True when this session may start, stop and resume jobs (and change what the whole server shares)."""
    return not password_set() or bool(st.session_state.get(UNLOCKED))


def _locked_out_for() -> float:
    count, last = st.session_state.get(FAILURES, (0, 0.0))
    return max(0.0, LOCKOUT[1] - (time.time() - last)) if count >= LOCKOUT[0] else 0.0


def _try(guess: str) -> None:
    expected = _password()
    if expected is None:
        return
    wait = _locked_out_for()
    if wait:
        st.error(f"Too many wrong guesses: try again in {wait:.0f} s.")
        return
    if hmac.compare_digest(guess.encode(), expected.encode()):
        st.session_state[UNLOCKED] = True
        st.session_state.pop(FAILURES, None)
        log.info("teacher controls unlocked in a session")
        return
    with _guesses:
        time.sleep(WRONG_GUESS_DELAY_S)
    count, _ = st.session_state.get(FAILURES, (0, 0.0))
    st.session_state[FAILURES] = (count % LOCKOUT[0] + 1, time.time())
    log.warning("a wrong teacher password was entered")
    st.error("That is not the teacher password.")


def sidebar() -> None:
    """The unlock form (or the lock button) in the sidebar; nothing when no password is set."""
    if not password_set():
        return
    if st.session_state.get(UNLOCKED):
        st.caption("Teacher controls are unlocked in this tab.")
        if st.button("Lock teacher controls", key="teacher_lock", icon=":material/lock:"):
            st.session_state[UNLOCKED] = False
            st.rerun()
        return
    with st.form("teacher_unlock", clear_on_submit=True, border=False):
        guess = st.text_input("Teacher password", type="password", key="teacher_password_input",
                              autocomplete="current-password",
                              help="Only the teacher can start, stop and resume training on this server.")
        submitted = st.form_submit_button("Unlock teacher controls", icon=":material/lock_open:",
                                          key="teacher_unlock_submit")
    if submitted and guess:
        _try(guess)
        if st.session_state.get(UNLOCKED):
            st.rerun()


def notice() -> None:
    """One line on the Train page: who may control training here."""
    if not password_set():
        st.caption("No teacher password is set on this server, so anyone who opens this page can start, stop and "
                   "resume training.")
    elif can_control():
        st.caption("Teacher controls are unlocked in this tab: you can start, stop and resume training.")
    else:
        st.caption(":material/lock: Only the teacher can start, stop and resume training on this server; you can "
                   "watch. (Teacher: unlock the controls in the sidebar.)")


LOCKED_HELP = "Only the teacher can do this here (the teacher unlocks the controls in the sidebar)."


def locked_help(default: str | None = None) -> str | None:
    """A disabled control's tooltip when this session may not use it, else `default`."""
    return default if can_control() else LOCKED_HELP


# ------------------------------------------------------------------ the gate every action passes


def may_act(what: str = "an action") -> bool:
    """The first line of every action handler that changes what the server does or holds, on any page::

        if not teacher.may_act("start training"):
            return

    True when this tab may act: no teacher password is set, or this tab has entered it. Otherwise it shows the
    locked message, logs `what` was refused, and returns False, so that nothing happens. A disabled button is only
    a request to the browser: a forged message, or a click sent just before the teacher locked the tab, still
    reaches the handler, and this check, made on the server when the action runs, is what refuses it. (Grey the
    button out as well: `disabled=not teacher.can_control(), help=teacher.locked_help(...)`.)"""
    if can_control():
        return True
    log.warning("refused %s: this tab has not unlocked the teacher controls", what)
    st.error(LOCKED_HELP)
    return False


# ------------------------------------------------------------------ the Train page's actions


def start(settings: TrainConfig) -> str | None:
    """Start a job as the Train page's Start button does; the run id, or None after showing why not."""
    if not may_act("starting training"):
        return None
    try:
        run_id = jobs.start(settings)
    except (jobs.JobError, ValueError, OSError) as e:
        st.error(str(e))
        return None
    live.poller().refresh()
    return run_id


def stop(force: bool = False) -> None:
    if not may_act("stopping training"):
        return
    try:
        jobs.stop(force=force)
    except (jobs.JobError, OSError) as e:
        st.error(str(e))
    live.poller().refresh()


def resume(run_id: str) -> bool:
    """Resume a run from its checkpoint; False after showing why not."""
    return _relaunch(jobs.resume, run_id, "resuming training")


def restart(run_id: str) -> bool:
    """Start a run that ended before its first checkpoint again, with its settings; False after showing why not."""
    return _relaunch(jobs.restart, run_id, "starting a run again")


def _relaunch(action, run_id: str, what: str) -> bool:
    if not may_act(what):
        return False
    try:
        action(run_id)
    except (jobs.JobError, OSError, ValueError) as e:
        st.error(str(e))
        return False
    live.poller().refresh()
    return True


def fit(settings: TrainConfig) -> str | None:
    """Show what the job needs against what this server allows; the reason it may not start, or None."""
    try:
        need = budget.check(settings)
        allowed = budget.allowance(need.device)
    except ValueError as e:  # budget.TooBig, or a limit the server's operator set wrongly
        st.error(str(e))
        return str(e)
    st.caption(budget.describe(need, allowed))
    return None
