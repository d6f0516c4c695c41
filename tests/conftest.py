"""Shared fixtures. Nothing here downloads: RESNET_DEMO_OFFLINE=1 is set for the whole session.

- synthetic_data_dir: a small learnable stand-in for CIFAR-10 (train.npz/test.npz), made on the fly.
- real_data_dir: the genuine set from $RESNET_DEMO_TEST_DATA (.ci/run sets it); skips with a reason if absent.
- real_test_split / shipped_evaluation: its test set, and each shipped model evaluated on it once per session.
- tiny_run / tiny_weights_dir: a real (tiny) training run on synthetic data, and it shipped into a weights folder.
- $RESNET_DEMO_TEST_TIMES=FILE: each test's wall and CPU seconds appended to FILE (see docs/TESTING.md).
- browser_server / browser_app / browser_page: one `streamlit run` server for every browser test of the session
  (see tests/test_browser.py's docstring); browser_servers.get(NAME=value) for one configured otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ["RESNET_DEMO_OFFLINE"] = "1"
torch.set_num_threads(min(2, os.cpu_count() or 1))
# AppTest runs the app inside this process: keep the threads above, rather than the app server's one a call.
os.environ.setdefault("RESNET_DEMO_APP_THREADS", str(torch.get_num_threads()))

THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Each test starts with the suite's thread count: a test that changes it (a benchmark's --threads) would
    otherwise change the floating-point sums of every later training test in this process."""
    yield
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


REAL_DATA_ENV = "RESNET_DEMO_TEST_DATA"
TIMES_ENV = "RESNET_DEMO_TEST_TIMES"  # a file: each test's wall and CPU seconds are appended there (docs/TESTING.md)


def _cpu_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for (user + system)."""
    import resource

    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With $RESNET_DEMO_TEST_TIMES set, one JSON line a test: wall and CPU seconds (setup, call and teardown), its
    lane markers and the load average. CPU seconds tell more than wall seconds on a machine shared with other work;
    a server or trainer a test starts counts only once it has been waited for."""
    path = os.environ.get(TIMES_ENV)
    if not path:
        yield
        return
    import json
    import time

    wall, cpu = time.perf_counter(), _cpu_seconds()
    yield
    marks = sorted({m.name for m in item.iter_markers()} & {"slow", "realdata", "browser"})
    with open(path, "a") as f:
        f.write(json.dumps({"id": item.nodeid, "wall_s": round(time.perf_counter() - wall, 2),
                            "cpu_s": round(_cpu_seconds() - cpu, 2), "marks": marks,
                            "load1": round(os.getloadavg()[0], 2)}) + "\n")


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    from resnet_demo.data.cifar import save_npz_pair, synthetic_cifar10

    return save_npz_pair(synthetic_cifar10(640, 320, seed=0), tmp_path_factory.mktemp("synthetic-cifar10"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    d = os.environ.get(REAL_DATA_ENV)
    if not d or not (Path(d) / "test.npz").is_file() and not (Path(d) / "cifar-10-batches-py").is_dir():
        pytest.skip(f"the full CIFAR-10 is not available: set {REAL_DATA_ENV} to a folder with train.npz/test.npz "
                    f"or cifar-10-batches-py (`python -m resnet_demo download --data-dir DIR` fetches it)")
    return Path(d).resolve()  # subprocess tests run elsewhere: a relative path would not travel


@pytest.fixture(scope="session")
def real_test_split(real_data_dir):
    """The genuine 10,000 test images, read once for the session."""
    from resnet_demo.data.cifar import load_cifar10

    return load_cifar10(real_data_dir).test


@pytest.fixture(scope="session")
def shipped_evaluation(real_test_split):
    """shipped_evaluation(entry): evaluate() of a model on the genuine test set with flip-TTA (two passes over the
    10,000 images, in fp32 on the CPU, as `ship` measured it), computed once per session for each weights file
    and shared: every test that needs a shipped model's real figures asks here rather than evaluating again.
    Keyed by the sha256 of the file's bytes, so two names for one file share a result and a changed file does not.
    """
    from resnet_demo.base.storage import sha256_file
    from resnet_demo.store.evaluate import evaluate

    results: dict[str, dict] = {}

    def get(entry) -> dict:
        key = sha256_file(entry.weights)
        if key not in results:
            results[key] = evaluate(entry.load(), real_test_split, "cpu", flip_tta=True)
        return results[key]

    return get


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synthetic_data_dir) -> Path:
    """A finished 2-epoch ResNet-8 run on synthetic data: config, events, checkpoint, model, preds, metrics."""
    from resnet_demo.training.config import TrainConfig
    from resnet_demo.training.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(TrainConfig(depth=8, preset="classroom", epochs=2, batch_size=64, device="cpu",
                      data_dir=str(synthetic_data_dir), out=str(out), download=False))
    return out


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory, tiny_run, synthetic_data_dir) -> Path:
    """A weights/ folder with the tiny run shipped as 'resnet8' (manifest, history, preds, test images)."""
    from resnet_demo.store.ship import ship_run

    directory = tmp_path_factory.mktemp("weights")
    ship_run(tiny_run, "resnet8", data_dir=str(synthetic_data_dir), download=False, directory=directory)
    return directory


@pytest.fixture
def app_env(monkeypatch, tmp_path):
    """Point the app at empty folders (no weights, no runs, no data) and run from tmp_path, so the checkout's
    weights/, ./data and ./runs are never picked up; a test sets what it needs on top with .setenv."""
    runs, data = tmp_path / "runs", tmp_path / "no-data"
    runs.mkdir()
    data.mkdir()
    monkeypatch.setenv("RESNET_DEMO_RUNS", str(runs))
    monkeypatch.setenv("RESNET_DEMO_DATA", str(data))
    monkeypatch.setenv("RESNET_DEMO_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def running_job(tmp_path):
    """A stand-in for a running training job in tmp_path/runs: a sleeping process that holds the job lock (its
    command line names the run, as a trainer's does) and an event file with a start and a few steps. Yields
    (runs, run_id); the process is ended afterwards."""
    import json
    import subprocess
    import sys
    import time

    from resnet_demo.base.storage import atomic_write_json
    from resnet_demo.server import jobs
    from resnet_demo.store.events import write_events

    runs, run_id = tmp_path / "runs", "20260101-000000-resnet20"
    (runs / run_id).mkdir(parents=True, exist_ok=True)
    events = [{"type": "start", "label": "ResNet-20", "total_steps": 400, "steps_per_epoch": 40, "epochs": 10,
               "batch_size": 128, "train_images": 5000, "test_images": 2000, "device": "CPU",
               "config": {"precision_used": "fp32"}, "resumed_from_step": None}]
    events += [{"type": "step", "step": s, "epoch": s / 40, "loss": 2.0 - s / 100, "acc": 0.2, "lr": 0.1,
                "images_per_s": 300.0, "eta_s": 100.0, "elapsed_s": s / 2, "total_steps": 400} for s in range(1, 31)]
    write_events(runs / run_id / "events.jsonl", events)
    (runs / run_id / jobs.JOB_FILE).write_text(json.dumps({"args": ["--depth", "20"], "settings": {"depth": 20}}))
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", run_id])
    atomic_write_json(runs / jobs.ACTIVE_FILE, {"run_id": run_id, "pid": proc.pid, "server_pid": None,
                                                "created": time.time()})
    yield runs, run_id
    proc.kill()
    proc.wait()


# ------------------------------------------------------------------ the browser tests' one server (browser_util.py)


@pytest.fixture(scope="session")
def browser_data_dir(synthetic_data_dir) -> Path:
    """The data the served app sees: the synthetic fixture, or for README screenshots a real data set
    ($RESNET_DEMO_SCREENSHOT_DATA)."""
    return Path(os.environ.get("RESNET_DEMO_SCREENSHOT_DATA") or synthetic_data_dir)


@pytest.fixture(scope="session")
def browser_servers(request, browser_data_dir, tmp_path_factory):
    """The app servers of this test session: `.get()` is the shared one, `.get(NAME=value)` one started (once) with
    other environment settings. Each has its own empty runs folder; all stop when the session ends."""
    from browser_util import ROOT, Servers, sync_playwright_or_skip

    sync_playwright_or_skip()  # without Chromium or Playwright: skip before starting anything
    # README screenshots want the real shipped models: RESNET_DEMO_SCREENSHOT_WEIGHTS=weights (same assertions);
    # the tiny run is trained only when it is what the server shows.
    weights = (os.environ.get("RESNET_DEMO_SCREENSHOT_WEIGHTS")
               or str(request.getfixturevalue("tiny_weights_dir")))
    servers = Servers(tmp_path_factory.mktemp, {
        "RESNET_DEMO_WEIGHTS": weights, "RESNET_DEMO_DATA": str(browser_data_dir), "RESNET_DEMO_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    yield servers
    servers.close()


@pytest.fixture(scope="session")
def browser_server(browser_servers) -> dict:
    """The shared live server: {"base": URL, "runs": its runs folder, "log": its log file, ...}."""
    return browser_servers.get()


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium through Playwright, one per test module (a launch costs about a second)."""
    from browser_util import CHROMIUM, CHROMIUM_ARGS, sync_playwright_or_skip

    sync_playwright = sync_playwright_or_skip()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser_app(browser_server, chromium):
    """The shared server and this module's browser: the `app` dict the page helpers of browser_util take."""
    from browser_util import stop_training_job

    yield {**browser_server, "browser": chromium}
    stop_training_job(browser_server["runs"])  # no training job started here outlives this module


@pytest.fixture
def browser_page(browser_app):
    """A fresh tab (its own browser context, so its own Streamlit session) on the shared server."""
    from browser_util import LONG, VIEWPORT

    context = browser_app["browser"].new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(LONG)
    yield page
    context.close()
