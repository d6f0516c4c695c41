"""What the browser tests share: the app served by `streamlit run`, headless Chromium, and the page helpers.

The fixtures that go with it are in conftest.py: one server for the whole test session, whichever browser test
file asks first starts it (starting it and its first render cost about a minute on a loaded 2-core machine, so
each test file starting its own would add that much per file). See tests/test_browser.py's docstring for how a
test uses them.
"""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1400, "height": 2200}
MAX_PNG_BYTES = 400_000
LONG = 180_000  # ms: the first render imports torch; the machine is shared and slow
START_S = 120  # how long a server may take to answer its health check


def sync_playwright_or_skip():
    """Playwright's sync entry point, or a skip that says what is missing (checked before any server starts)."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing (Debian package 'chromium'; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; its browser download is not needed)")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Servers:
    """App servers started on demand, one per distinct set of environment settings, all stopped by close().

    `get()` is the shared default server; `get(RESNET_DEMO_TEACHER_PASSWORD="pw")` starts (once) a second one
    for the tests that need the server configured otherwise, since a running server's settings cannot change.
    """

    def __init__(self, make_dir, env: dict[str, str]):
        self.make_dir = make_dir  # tmp_path_factory.mktemp
        self.env = env
        self.running: dict[tuple, dict] = {}

    def get(self, **overrides: str) -> dict:
        key = tuple(sorted(overrides.items()))
        if key not in self.running:
            self.running[key] = self._start(overrides)
        return self.running[key]

    def _start(self, overrides: dict[str, str]) -> dict:
        runs = self.make_dir("browser-runs")
        log_path = self.make_dir("browser-log") / "streamlit.log"
        port = _free_port()
        env = {**os.environ, **self.env, "RESNET_DEMO_RUNS": str(runs), **overrides}
        log = open(log_path, "wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        app = {"base": f"http://127.0.0.1:{port}", "runs": runs, "log": log_path, "server": server, "log_file": log}
        try:
            _wait_healthy(app)
        except BaseException:
            _stop(app)
            raise
        return app

    def close(self) -> None:
        for app in self.running.values():
            _stop(app)
        self.running.clear()


def _wait_healthy(app: dict) -> None:
    server, log_path = app["server"], app["log"]
    deadline = time.time() + START_S
    while True:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{app['base']}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            pytest.fail(f"streamlit did not answer within {START_S} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def _stop(app: dict) -> None:
    server = app["server"]
    stop_training_job(app["runs"])
    try:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own session: it and nothing else
        server.wait(timeout=15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)
    app["log_file"].close()


def stop_training_job(runs: Path) -> None:
    """A job the Train page started runs in its own session, so it outlives the server unless stopped here."""
    try:
        from resnet_demo.server import jobs
    except ImportError:
        return
    try:
        if jobs.stop(runs, force=True) is not None:
            jobs_deadline = time.time() + 20
            while jobs.active(runs) is not None and time.time() < jobs_deadline:
                time.sleep(0.5)
    except Exception as e:  # noqa: BLE001 - cleanup must not mask the test's own result
        print(f"could not stop the training job in {runs}: {e}", file=sys.stderr)


# ------------------------------------------------------------------ page helpers


def open_page(page, app, path: str) -> None:
    """Open a page by its url_path; the default page (Predict) lives at "/" and its own path is not served."""
    from resnet_demo.app.main import PAGES

    default = PAGES[0][3]
    page.goto(f"{app['base']}/{'' if path == default else path}")
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=LONG)
    settle(page)


def settle(page, quiet_s: float = 1.5, timeout_s: float = 60) -> None:
    """Wait until the main area stops changing (a rerun has finished); gives up quietly on live pages."""
    main = page.locator('[data-testid="stMain"]')
    last, since, deadline = None, time.time(), time.time() + timeout_s
    while time.time() < deadline:
        text = main.inner_text()
        if text != last or page.locator('[data-stale="true"]').count():
            last, since = text, time.time()
        elif time.time() - since >= quiet_s:
            return
        time.sleep(0.25)


def assert_no_error(page, app) -> None:
    boxes = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
    texts = [boxes.nth(i).inner_text() for i in range(boxes.count())]
    assert not texts, f"error boxes on {page.url}: {texts}\nserver log tail:\n{app['log'].read_text()[-2000:]}"


def screenshot(page, name: str) -> Path:
    """Save to the screenshots folder; a PNG over MAX_PNG_BYTES is re-saved with a 256-colour palette."""
    from PIL import Image

    out = Path(os.environ.get("RESNET_DEMO_SCREENSHOTS_DIR") or ROOT / "test-artifacts")
    out = out if out.is_absolute() else ROOT / out
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    data = page.screenshot()
    if len(data) > MAX_PNG_BYTES:
        img = Image.open(io.BytesIO(data)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        buf = io.BytesIO()
        img.save(buf, "PNG", optimize=True)
        data = buf.getvalue()
    path.write_bytes(data)
    return path


def select(page, label: str, option: str) -> None:
    box = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(label, exact=True)).first
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def fill_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True).first
    field.fill(str(value))
    field.press("Enter")
    settle(page)
