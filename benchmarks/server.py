"""The Streamlit server as a student meets it: cold start until the first page is rendered, and its memory.

Cold start: `streamlit run streamlit_app.py` is launched as a fresh process; the clock runs until headless
Chromium (already open, driven by Playwright) shows the page with its first script run finished
(stApp's data-test-script-state goes from "initial" through "running" to "notRunning"). The time until
/_stcore/health answers is reported beside it. The OS file cache is warm (packages were read before), as on a
classroom server that is restarted.

Memory: the same app, launched through a two-line wrapper that also loads every model of the weights folder
through the app's own cache (state.load); the server's peak resident set (VmHWM) after that first run.
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from .common import REPO, Row, Workspace, skipped

COLD_START_TARGET_S = 5.0
MEMORY_TARGET_MB = 1500.0  # 1.5 GB
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
RENDERED = '[data-testid="stApp"][data-test-script-state="notRunning"]'
SIDEBAR_TEXT = "Deep Residual Learning"  # the caption main.run() writes before any page runs

PRELOAD_SCRIPT = f"""import sys
sys.path.insert(0, {str(REPO)!r})
from resnet_demo.app.main import run
run()
from resnet_demo.app import state
for entry in state.models():
    state.load(entry)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


@contextmanager
def _server(ws: Workspace, script: Path):
    """A Streamlit server of the app (our own child process), stopped on exit; yields (process, url, t_launch)."""
    port = _free_port()
    weights, _ = ws.weights()
    data_dir, _ = ws.data_dir()
    (ws.root / "app-runs").mkdir(exist_ok=True)
    env = {**os.environ, "RESNET_DEMO_WEIGHTS": str(weights), "RESNET_DEMO_RUNS": str(ws.root / "app-runs"),
           "RESNET_DEMO_DATA": str(data_dir), "RESNET_DEMO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    log = open(ws.root / f"streamlit-{port}.log", "wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc, f"http://127.0.0.1:{port}", t0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_health(proc: subprocess.Popen, url: str, timeout: float = 120) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Streamlit server exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{url}/_stcore/health did not answer within {timeout:.0f} s")


def _browser():
    """(playwright, browser) or (None, reason)."""
    if not Path(CHROMIUM).is_file():
        return None, f"{CHROMIUM} not found"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        return None, f"Playwright not installed ({e})"
    pw = sync_playwright().start()
    try:
        return (pw, pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)), None
    except Exception as e:  # noqa: BLE001 - any launch failure becomes a skip reason
        pw.stop()
        return None, f"Chromium did not start under Playwright ({type(e).__name__}: {e})"


def _render(browser, url: str, timeout_s: float = 180) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    try:
        page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
        page.get_by_text(SIDEBAR_TEXT).first.wait_for(timeout=timeout_s * 1000)
        page.wait_for_selector(RENDERED, timeout=timeout_s * 1000)
    finally:
        page.close()


def server_rows(ws: Workspace, quick: bool, want_cold: bool, want_memory: bool, log) -> list[Row]:
    rows: list[Row] = []
    handle, reason = _browser()
    if handle is None:
        if want_cold:
            rows.append(_health_only(ws, reason, log))
        if want_memory:
            rows.append(skipped("app.memory", "Server peak memory, all models loaded", "MB",
                                f"<= {MEMORY_TARGET_MB:g} MB", f"needs a browser to run the app's script: {reason}"))
        return rows
    pw, browser = handle
    try:
        if want_cold:
            rows.append(_cold_start(ws, browser, 1 if quick else 3, log))
        if want_memory:
            rows.append(_memory(ws, browser, log))
    finally:
        browser.close()
        pw.stop()
    return rows


def _cold_start(ws: Workspace, browser, repeats: int, log) -> Row:
    renders, healths, idle_mb = [], [], []
    for i in range(repeats):
        log(f"  cold start {i + 1}/{repeats} ...")
        with _server(ws, REPO / "streamlit_app.py") as (proc, url, t0):
            _wait_health(proc, url)
            healths.append(time.perf_counter() - t0)
            _render(browser, url)
            renders.append(time.perf_counter() - t0)
            rss = _status_kb(proc.pid, "VmRSS")
            if rss:
                idle_mb.append(rss * 1024 / 1e6)
    value = statistics.median(renders)
    _, note = ws.weights()
    return Row("app.cold_start", "App cold start to first rendered page", value, "s", f"<= {COLD_START_TARGET_S:g} s",
               value <= COLD_START_TARGET_S,
               f"median of {repeats}: `streamlit run` until Chromium shows the default page with its script run "
               f"finished; health endpoint after {statistics.median(healths):.1f} s; server RSS then "
               f"{statistics.median(idle_mb):.0f} MB; {note}" if idle_mb else "",
               extra={"render_s": renders, "health_s": healths})


def _health_only(ws: Workspace, reason: str, log) -> Row:
    log("  cold start (health endpoint only) ...")
    with _server(ws, REPO / "streamlit_app.py") as (proc, url, t0):
        _wait_health(proc, url)
        health = time.perf_counter() - t0
    return Row("app.cold_start", "App cold start (health endpoint only)", health, "s", f"<= {COLD_START_TARGET_S:g} s",
               None, f"page render NOT measured ({reason}); the app's script has not run at this point, so this is a "
                     f"lower bound", extra={"health_s": [health]})


def _memory(ws: Workspace, browser, log) -> Row:
    from resnet_demo.store.registry import shipped_models

    weights, note = ws.weights()
    n = len(shipped_models(weights))
    script = ws.root / "preload_app.py"
    script.write_text(PRELOAD_SCRIPT)
    log(f"  server memory with {n} models loaded ...")
    with _server(ws, script) as (proc, url, t0):
        _wait_health(proc, url)
        _render(browser, url)
        peak, now = _status_kb(proc.pid, "VmHWM"), _status_kb(proc.pid, "VmRSS")
    if peak is None:
        return skipped("app.memory", "Server peak memory, all models loaded", "MB", f"<= {MEMORY_TARGET_MB:g} MB",
                       "/proc/<pid>/status not readable (not Linux?)")
    mb = peak * 1024 / 1e6
    return Row("app.memory", "Server peak memory (RSS), all models loaded", mb, "MB", f"<= {MEMORY_TARGET_MB:g} MB",
               mb <= MEMORY_TARGET_MB,
               f"VmHWM of the server after its first page run with all {n} models loaded via state.load "
               f"(RSS then {now * 1024 / 1e6:.0f} MB); {note}", extra={"vmhwm_kb": peak, "vmrss_kb": now})
