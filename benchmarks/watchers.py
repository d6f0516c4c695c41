"""The server's CPU while many browser tabs watch one training job live on the Train page.

    python -m benchmarks.watchers                      # 1, 8 and 30 tabs, 30 s each
    python -m benchmarks.watchers --tabs 30 --seconds 60 --json out.json
    python -m benchmarks.watchers --figures            # only: the cost of building and sending the live charts

A stand-in job (`python -m benchmarks.watchers fake-job RUNS RUN_ID`, started here) holds the server's job lock and
appends to its event file what a trainer does: a step record every half second and an epoch record every 40
steps, after a history of 2,000 steps (a class's job some 15 minutes in), so every tab redraws full charts. It
costs almost no CPU itself, so what is measured is the server. Headless Chromium (one browser, one context per
tab, so each tab is its own session, like one student each) opens /train against 127.0.0.1; the server's CPU is
its utime + stime from /proc over the window, divided by the window's length (1.0 = one core). The browser's CPU
is reported beside it: on a small machine it competes with the server for the same cores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, machine
from .server import _browser, _free_port, _wait_health

HISTORY_STEPS = 2000
STEPS_PER_EPOCH = 40
RUNNING = "running"  # the Train page's badge text for a running job


# ---------------------------------------------------------------- the stand-in job


def fake_job(runs: Path, run_id: str, seconds: float) -> None:
    """Write a trainer's event stream into runs/run_id for `seconds`, or until a STOP file appears."""
    from resnet_demo.store.events import EventLog

    out = runs / run_id
    out.mkdir(parents=True, exist_ok=True)
    log = EventLog(out / "events.jsonl")
    total = 100 * STEPS_PER_EPOCH
    log({"type": "start", "label": "ResNet-20", "total_steps": total, "steps_per_epoch": STEPS_PER_EPOCH,
         "epochs": 100, "batch_size": 128, "train_images": 5000, "test_images": 2000, "device": "stand-in job",
         "config": {"precision_used": "fp32"}, "params": 272474, "resumed_from_step": None, "time": time.time()})
    step = 0

    def one_step() -> None:
        nonlocal step
        step += 1
        epoch = step / STEPS_PER_EPOCH
        log({"type": "step", "step": step, "epoch": epoch, "loss": 2.3 / (1 + epoch), "acc": 0.1 + epoch / 200,
             "lr": 0.1, "images_per_s": 300.0, "eta_s": 600.0, "elapsed_s": step * 0.5, "total_steps": total})
        if step % STEPS_PER_EPOCH == 0:
            log({"type": "epoch", "epoch": step // STEPS_PER_EPOCH, "step": step, "train_loss": 1.0,
                 "train_acc": min(0.99, 0.3 + epoch / 100), "test_loss": 1.1, "test_acc": min(0.95, 0.3 + epoch / 110),
                 "lr": 0.1, "elapsed_s": step * 0.5, "eta_s": 600.0})

    for _ in range(HISTORY_STEPS):
        one_step()
    deadline = time.time() + seconds
    while time.time() < deadline and not (out / "STOP").exists():
        time.sleep(0.5)
        one_step()
    log({"type": "end", "status": "stopped", "message": "stopped", "elapsed_s": step * 0.5, "step": step})
    log.close()


def _start_fake_job(runs: Path, seconds: float) -> tuple[subprocess.Popen, str]:
    from resnet_demo.base.storage import atomic_write_json
    from resnet_demo.server import jobs

    run_id = time.strftime("%Y%m%d-%H%M%S") + "-resnet20"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.watchers", "fake-job", str(runs), run_id,
                             "--seconds", str(seconds)], cwd=REPO)
    atomic_write_json(runs / jobs.ACTIVE_FILE, {"run_id": run_id, "pid": proc.pid, "server_pid": None,
                                                "created": time.time()})
    return proc, run_id


# ---------------------------------------------------------------- measuring


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and all its descendants now alive (the browser and its renderers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += _cpu_seconds(pid)
        except OSError:
            continue
        todo += children.get(pid, [])
    return total


def _window(server_pid: int, browser_pid: int | None, seconds: float) -> dict:
    t0, s0 = time.perf_counter(), _cpu_seconds(server_pid)
    b0 = _tree_cpu_seconds(browser_pid) if browser_pid else 0.0
    time.sleep(seconds)
    wall = time.perf_counter() - t0
    return {"server_cores": (_cpu_seconds(server_pid) - s0) / wall,
            "browser_cores": ((_tree_cpu_seconds(browser_pid) - b0) / wall) if browser_pid else None,
            "window_s": wall, "load_average": list(os.getloadavg())}


def _open_tab(browser, url: str, timeout_s: float):
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    page.goto(url + "/train", wait_until="commit", timeout=timeout_s * 1000)
    page.get_by_text(RUNNING, exact=True).first.wait_for(timeout=timeout_s * 1000)
    page.get_by_text("Training loss (per step)").first.wait_for(timeout=timeout_s * 1000)
    return context


def _server(runs: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "RESNET_DEMO_RUNS": str(runs), "RESNET_DEMO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)


def _browser_pid(before: set[int]) -> int | None:
    """The Chromium process this script launched: a child of ours that was not there before."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) not in before:
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")[0]
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if cmd.endswith(b"chromium") and ppid != 1 and b"--type=" not in (d / "cmdline").read_bytes():
                return int(d.name)
    return None


def measure(tab_counts: list[int], seconds: float, settle: float, log=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="resnet-demo-watchers-") as tmp:
        runs = Path(tmp) / "runs"
        runs.mkdir()
        port = _free_port()
        server = _server(runs, port, Path(tmp) / "streamlit.log")
        url = f"http://127.0.0.1:{port}"
        job, run_id = _start_fake_job(runs, seconds=3600)
        contexts, results = [], []
        handle, reason = None, None
        try:
            _wait_health(server, url)
            time.sleep(settle)
            log("  0 tabs ...")
            results.append({"tabs": 0, **_window(server.pid, None, seconds)})
            before = {int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()}
            handle, reason = _browser()
            if handle is None:
                raise RuntimeError(f"no browser: {reason}")
            pw, browser = handle
            browser_pid = _browser_pid(before)
            for n in tab_counts:
                while len(contexts) < n:
                    contexts.append(_open_tab(browser, url, timeout_s=300))
                log(f"  {n} tabs open; settling {settle:.0f} s, then measuring {seconds:.0f} s ...")
                time.sleep(settle)
                results.append({"tabs": n, **_window(server.pid, browser_pid, seconds)})
                log(f"    server {results[-1]['server_cores']:.3f} cores, browser "
                    f"{results[-1]['browser_cores']:.2f} cores")
        finally:
            (runs / run_id / "STOP").write_text("benchmark over\n")
            for c in contexts:
                c.close()
            if handle is not None:
                handle[1].close()
                handle[0].stop()
            server.terminate()
            server.wait(30)
            job.wait(30)
    return {"machine": machine(), "seconds": seconds, "results": results,
            "command": "python -m benchmarks.watchers " + " ".join(sys.argv[1:])}


def figure_costs(repeats: int = 20) -> dict:
    """Milliseconds to build each live chart of a 2,000-step history, and to serialise one as st.plotly_chart does
    (what every tab paid each second before the figures were shared, and what it still pays)."""
    import plotly.io

    from resnet_demo.app.charts import curves as charts
    from resnet_demo.store.events import read_events

    with tempfile.TemporaryDirectory() as tmp:
        fake_job(Path(tmp), "run", seconds=0)
        events = read_events(Path(tmp) / "run" / "events.jsonl")

    def ms(fn) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        return 1000 * (time.perf_counter() - t) / repeats

    loss = charts.loss_figure(events)
    return {"build_loss_ms": ms(lambda: charts.loss_figure(events)),
            "build_accuracy_ms": ms(lambda: charts.accuracy_figure(events)),
            "build_lr_ms": ms(lambda: charts.lr_figure(events)),
            "serialise_loss_ms": ms(lambda: plotly.io.to_json(loss.to_dict(), validate=False))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.watchers", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    fake = sub.add_parser("fake-job", help="(internal) the stand-in training job")
    fake.add_argument("runs", type=Path)
    fake.add_argument("run_id")
    fake.add_argument("--seconds", type=float, default=600)
    p.add_argument("--tabs", default="1,8,30", help="tab counts to measure at, ascending (default 1,8,30)")
    p.add_argument("--seconds", type=float, default=30, help="length of each measuring window (default 30)")
    p.add_argument("--settle", type=float, default=10, help="wait after opening tabs before measuring (default 10)")
    p.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    p.add_argument("--figures", action="store_true", help="only time building and serialising the live charts")
    args = p.parse_args(argv)
    if args.command == "fake-job":
        fake_job(args.runs, args.run_id, args.seconds)
        return 0
    if args.figures:
        print(", ".join(f"{k} {v:.1f}" for k, v in figure_costs().items()))
        return 0
    report = measure([int(t) for t in args.tabs.split(",")], args.seconds, args.settle)
    print(f"{'tabs':>5} {'server (cores)':>15} {'browser (cores)':>16} {'load avg (1 min)':>17}")
    for r in report["results"]:
        browser = f"{r['browser_cores']:.2f}" if r["browser_cores"] is not None else "-"
        print(f"{r['tabs']:>5} {r['server_cores']:>15.3f} {browser:>16} {r['load_average'][0]:>17.1f}")
    print(f"machine: {report['machine']['cpu']}, {report['machine']['cpu_count']} cores")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
