"""`python -m benchmarks.load`: a class of students against one app server on 127.0.0.1, and its memory.

    python -m benchmarks.load                          # 30 students, 6 at a time, then the memory cases
    python -m benchmarks.load --students 10 --concurrency 4 --skip memory
    python -m benchmarks.load --skip load --json out.json

Starts `streamlit run streamlit_app.py` itself (the shipped weights, no data set, an empty runs folder, the
repository's .streamlit/config.toml) and drives it with headless Chromium through Playwright: one browser, one
context (a private window) per student.

load: each student opens Predict, uploads a 1024x768 JPEG, waits for the top-5 chart and reads its five classes,
then presses "Explain this prediction" and waits for the map of one method (Grad-CAM by default). Two latencies
each: in the page, from handing the file over (or the click) until the chart (or the map) is drawn and the run
has finished, which includes this machine's browser uploading and rendering; and on the wire, from the rerun
request the page sends to the end of that script run, read from the WebSocket frames: the server's share, which
is what a class with browsers on their own laptops would wait for, plus the upload. At most --concurrency
students are active at a time.

memory: one student at a time uploads each hostile or largest-accepted file set, then closes the tab. Reported:
the server's resident memory just before, its peak while the upload is handled, and once the session is gone.

The server's memory is the resident set of its process tree, sampled every 50 ms from /proc; its CPU is its
threads' time on a CPU, and beside it their time runnable but waiting for one (/proc/<pid>/task/*/schedstat),
which says whether a latency was the server's work or queueing behind other work on the machine. Everything is
bounded: --students, --deadline, and a per-step timeout.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .common import REPO, machine, synthetic_photo
from .server import CHROMIUM, CHROMIUM_ARGS, RENDERED, _free_port, _wait_health

ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
STEP_TIMEOUT_MS = 120_000
SESSION_TTL_S = 5  # a closed tab's session ends after this (Streamlit's default keeps it 120 s for a reconnect)
SERVER_OPTIONS = ("--server.disconnectedSessionTTL", str(SESSION_TTL_S))
TARGETS = {"errors": 0, "p95_predict_s": 2.0, "peak_mb": 1500.0, "upload_peak_added_mb": 100.0,
           "after_close_mb": 50.0}
METHOD_LABELS = {"saliency": "Saliency", "ig": "Integrated Gradients", "smoothgrad": "SmoothGrad",
                 "gradcam": "Grad-CAM", "guided-gradcam": "Guided Grad-CAM", "occlusion": "Occlusion"}


# ------------------------------------------------------------------ the server and its memory


def _tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _rss_mb(pids: list[int]) -> float:
    """Resident MB summed over pids."""
    kb = 0
    for p in pids:
        try:
            kb += next(int(line.split()[1]) for line in Path(f"/proc/{p}/status").read_text().splitlines()
                       if line.startswith("VmRSS:"))
        except (OSError, StopIteration, ValueError):
            pass
    return kb * 1024 / 1e6


def cpu_run_and_wait(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of every thread of pid's tree so far, from
    /proc/<pid>/task/*/schedstat: how much of a latency was the server working, and how much queueing."""
    run = wait = 0
    for p in _tree(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                on_cpu, waiting, _ = Path(f"/proc/{p}/task/{t}/schedstat").read_text().split()
            except (OSError, ValueError):
                continue
            run, wait = run + int(on_cpu), wait + int(waiting)
    return run / 1e9, wait / 1e9


class Sampler(threading.Thread):
    """Samples the server tree's RSS every 50 ms; peak() is the highest sample since the last mark()."""

    def __init__(self, pid: int, period: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.now_mb = self.max_mb = self._since_mark = 0.0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        pids, last_tree = [self.pid], 0.0
        while not self._halt.is_set():
            if time.monotonic() - last_tree > 1.0:
                pids, last_tree = _tree(self.pid), time.monotonic()
            mb = _rss_mb(pids)
            with self._lock:
                self.now_mb = mb
                self.max_mb = max(self.max_mb, mb)
                self._since_mark = max(self._since_mark, mb)
            self._halt.wait(self.period)

    def mark(self) -> float:
        with self._lock:
            self._since_mark = self.now_mb
            return self.now_mb

    def peak(self) -> float:
        with self._lock:
            return self._since_mark

    def __enter__(self) -> Sampler:
        self.start()
        time.sleep(1)  # a first sample
        return self

    def __exit__(self, *exc) -> None:
        self._halt.set()
        self.join(2)


def uploaded_bytes(base: str) -> int:
    """Bytes the server's upload store holds (Streamlit's /_stcore/metrics), 0 when it holds none. Streamlit
    caches the figure for 5 s; the memory cases read it at least that far apart."""
    with urllib.request.urlopen(f"{base}/_stcore/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(int(float(m.group(1))) for m in re.finditer(r'cache_type="UploadedFileManager"[^}]*}\s+(\S+)', text))


@contextmanager
def app_server(workdir: Path, *options: str, niceness: int = 0):
    """`streamlit run streamlit_app.py` on a free 127.0.0.1 port, in its own process group; yields (proc, url).
    options: more `--section.option value` flags; niceness: the server's scheduling priority (below 0 needs
    root), for a machine that other work shares."""
    port = _free_port()
    (workdir / "runs").mkdir(parents=True, exist_ok=True)
    (workdir / "no-data").mkdir(exist_ok=True)
    env = {**os.environ, "RESNET_DEMO_RUNS": str(workdir / "runs"), "RESNET_DEMO_DATA": str(workdir / "no-data"),
           "RESNET_DEMO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [*(["nice", "-n", str(niceness)] if niceness else []), sys.executable, "-m", "streamlit", "run",
           "streamlit_app.py", "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
           "--browser.gatherUsageStats", "false", *options]
    log_file = open(workdir / "streamlit.log", "wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_health(proc, url, timeout=180)
        yield proc, url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group we started: the server and nothing else
            proc.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)
        log_file.close()


# ------------------------------------------------------------------ a student in a browser


@dataclass
class Student:
    index: int
    predict_s: float | None = None  # in the page: file handed over -> top-5 chart drawn, run finished
    explain_s: float | None = None  # in the page: click -> map shown, run finished
    predict_server_s: float | None = None  # on the wire: the rerun request after the upload -> run finished
    explain_server_s: float | None = None  # on the wire: the click's rerun request -> the Explain run finished
    top5: list[str] = field(default_factory=list)
    error: str | None = None


class Wire:
    """The page's WebSocket traffic as (time, what): "rerun" for each rerun request the page sends, "done" for
    each script run that finished. From a rerun request to its run's end is the server's share of a latency:
    queueing for the CPU, the script run and sending its output, without this machine's browser rendering."""

    def __init__(self, page):
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self.events: list[tuple[float, str]] = []
        self._back, self._forward = BackMsg, ForwardMsg
        self._finished_ok = ForwardMsg.ScriptFinishedStatus.Value("FINISHED_SUCCESSFULLY")
        page.on("websocket", self._attach)

    def _attach(self, ws) -> None:
        if "_stcore/stream" in ws.url:
            ws.on("framesent", self._sent)
            ws.on("framereceived", self._received)

    def _sent(self, payload) -> None:
        if isinstance(payload, (bytes, bytearray)) and self._back.FromString(bytes(payload)).HasField("rerun_script"):
            self.events.append((time.perf_counter(), "rerun"))

    def _received(self, payload) -> None:
        if isinstance(payload, (bytes, bytearray)):
            msg = self._forward.FromString(bytes(payload))
            if msg.WhichOneof("type") == "script_finished" and msg.script_finished == self._finished_ok:
                self.events.append((time.perf_counter(), "done"))

    def latency(self, since: float) -> float | None:
        """From the first rerun request after `since` to the first run that finished after it."""
        sent = next((t for t, what in self.events if what == "rerun" and t >= since), None)
        done = next((t for t, what in self.events if what == "done" and sent is not None and t >= sent), None)
        return done - sent if done is not None else None


async def _rendered(page, timeout_ms: int = STEP_TIMEOUT_MS) -> None:
    await page.wait_for_selector(RENDERED, timeout=timeout_ms)


async def _error_boxes(page) -> list[str]:
    boxes = page.locator(ERRORS)
    return [await boxes.nth(i).inner_text() for i in range(await boxes.count())]


async def _new_page(browser):
    context = await browser.new_context(viewport={"width": 1280, "height": 1600})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    return context, await context.new_page()


async def _open_predict_upload(page, base: str) -> None:
    await page.goto(base + "/", wait_until="commit")
    await page.locator('[data-testid="stMain"] h1').filter(has_text="Predict").wait_for()
    await _rendered(page)
    await page.locator('[data-testid="stMain"] [data-testid="stRadio"] label').filter(
        has_text=re.compile(r"^Upload$")).click()
    await page.locator('[data-testid="stFileUploaderDropzoneInput"]').wait_for(state="attached")
    await _rendered(page)


async def student(browser, base: str, s: Student, photo: bytes, method: str) -> None:
    context, page = await _new_page(browser)
    wire = Wire(page)
    try:
        await _open_predict_upload(page, base)
        chart = page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]')
        t0 = time.perf_counter()
        await page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            {"name": f"photo{s.index}.jpg", "mimeType": "image/jpeg", "buffer": photo})
        await chart.locator(".ytick text").nth(4).wait_for(state="attached")
        await _rendered(page)
        s.predict_s, s.predict_server_s = time.perf_counter() - t0, wire.latency(t0)
        s.top5 = [await t.text_content() for t in await chart.locator(".ytick text").all()]
        if errors := await _error_boxes(page):
            raise RuntimeError(f"error boxes on Predict: {errors}")
        t0 = time.perf_counter()
        await page.get_by_role("button", name="Explain this prediction").click()
        await page.get_by_text(f"{METHOD_LABELS[method]} for “").first.wait_for()
        await _rendered(page)
        s.explain_s, s.explain_server_s = time.perf_counter() - t0, wire.latency(t0)
        if errors := await _error_boxes(page):
            raise RuntimeError(f"error boxes on Explain: {errors}")
    except Exception as e:  # noqa: BLE001 - every failure is counted and reported, not raised
        s.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    finally:
        await context.close()


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


async def _load(base: str, sampler: Sampler, students: int, concurrency: int, method: str, deadline_s: float,
                log) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # one warm-up visit first: the first page run imports torch and loads the model once per server
            warm = Student(-1)
            await student(browser, base, warm, synthetic_photo(seed=999), method)
            if warm.error:
                raise RuntimeError(f"the warm-up student failed: {warm.error}")
            await asyncio.sleep(2)
            before_mb = sampler.mark()
            (run0, wait0), t0 = cpu_run_and_wait(sampler.pid), time.perf_counter()
            gate = asyncio.Semaphore(concurrency)
            class_ = [Student(i) for i in range(students)]

            async def one(s: Student) -> None:
                async with gate:
                    log(f"  student {s.index + 1}/{students} ...")
                    await student(browser, base, s, synthetic_photo(seed=s.index), method)

            tasks = [asyncio.create_task(one(s)) for s in class_]
            done, pending = await asyncio.wait(tasks, timeout=deadline_s)
            for t in pending:
                t.cancel()
            for s in class_:
                if s.predict_s is None and s.error is None:
                    s.error = f"not finished within the {deadline_s:.0f} s deadline"
            wall = time.perf_counter() - t0
            run1, wait1 = cpu_run_and_wait(sampler.pid)
            peak = sampler.peak()
            await _end_sessions(browser, base)
        finally:
            await browser.close()
    def values(attr: str) -> list[float]:
        return [getattr(s, attr) for s in class_ if getattr(s, attr) is not None and s.error is None]

    predict, explain = values("predict_s"), values("explain_s")
    predict_server, explain_server = values("predict_server_s"), values("explain_server_s")
    return {
        "students": students, "concurrency": concurrency, "method": method, "wall_s": wall,
        "errors": [f"student {s.index}: {s.error}" for s in class_ if s.error],
        "predict_p50_s": _percentile(predict, 50), "predict_p95_s": _percentile(predict, 95),
        "explain_p50_s": _percentile(explain, 50), "explain_p95_s": _percentile(explain, 95),
        "predict_server_p50_s": _percentile(predict_server, 50),
        "predict_server_p95_s": _percentile(predict_server, 95),
        "explain_server_p50_s": _percentile(explain_server, 50),
        "explain_server_p95_s": _percentile(explain_server, 95),
        "server_mb_before": before_mb, "server_peak_mb": peak, "server_mb_after": sampler.now_mb,
        "server_cpu_s": run1 - run0, "server_cpu_cores": (run1 - run0) / wall if wall else None,
        "server_cpu_wait_s": wait1 - wait0,
        "top5_example": next((s.top5 for s in class_ if s.top5), []),
        "predict_s": predict, "explain_s": explain, "predict_server_s": predict_server,
        "explain_server_s": explain_server,
    }


# ------------------------------------------------------------------ memory: hostile and largest uploads


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def _gradient(w: int, h: int, dtype=np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return (np.arange(w, dtype=np.float32)[None, :] * (top / w) / 2
            + np.arange(h, dtype=np.float32)[:, None] * (top / h) / 2).astype(dtype)


def memory_cases() -> dict[str, list[tuple[str, bytes, str]]]:
    """name -> the files of one upload: the issue's hostile files, and the largest uploads the app accepts."""
    from PIL import Image

    from resnet_demo.app.uploads import MAX_FILES, MAX_SESSION_BYTES
    from resnet_demo.data.images import MAX_DECODED_BYTES

    rng = np.random.default_rng(0)
    side = int((MAX_DECODED_BYTES / 4) ** 0.5) - 8  # the largest colour PNG decoded (4 bytes a pixel)
    g = _gradient(side, side)
    def noisy(amount: int) -> np.ndarray:
        return np.clip(g.astype(np.int16) + rng.integers(-amount, amount, g.shape), 0, 255).astype(np.uint8)

    # the most a tab may hold: a file near the per-file limit and one that fills the tab's cap, both decoding big
    per_file = 16_000_000  # the browser's reading of server.maxUploadSize = 16
    sizes = [_png(np.stack([noisy(a), g[::-1], noisy(b)], -1)) for a, b in ((4, 1), (8, 2), (12, 4), (16, 6),
                                                                             (24, 8), (32, 12))]
    first = max((p for p in sizes if len(p) <= per_file), key=len)
    big_pngs = [first, max((p for p in sizes if len(first) + len(p) <= MAX_SESSION_BYTES), key=len)]
    smooth = [_png(np.stack([np.roll(g, 97 * i, 0), g[::-1], g.T], -1)) for i in range(MAX_FILES)]
    if sum(map(len, smooth)) > MAX_SESSION_BYTES:
        raise RuntimeError("the ten smooth PNGs are over the session cap; make them smoother")
    jpeg = io.BytesIO()
    w, h = 8660, 5773  # 50 megapixels, the most a header may claim
    grad, grain = _gradient(w, h), rng.integers(0, 32, (h, w), dtype=np.uint8)  # grain: a photo-like file size
    Image.fromarray(np.stack([grad + grain, grad, grad - grain], -1)).save(jpeg, "JPEG", quality=92)
    return {
        "16-bit grey PNG 7000x7000 (refused)": [("grey16.png", _png(_gradient(7000, 7000, np.uint16)), "image/png")],
        "ten 20 MB junk files (refused by the browser)": [(f"junk{i}.png", rng.bytes(20_000_000), "image/png")
                                                          for i in range(10)],
        f"{MAX_FILES} junk files of 15 MB (refused)": [(f"junk{i}.png", rng.bytes(15_000_000), "image/png")
                                                      for i in range(MAX_FILES)],
        f"two {side}x{side} colour PNGs, noisy (most bytes, largest decoded)": [
            (f"big{i}.png", b, "image/png") for i, b in enumerate(big_pngs)],
        f"{MAX_FILES} colour PNGs of {side}x{side}": [(f"p{i}.png", b, "image/png") for i, b in enumerate(smooth)],
        "50-megapixel JPEG": [("huge.jpg", jpeg.getvalue(), "image/jpeg")],
    }


async def _visit(browser, base: str, photo: bytes | None = None) -> None:
    """Open Predict (and upload a photo), then close the tab."""
    context, page = await _new_page(browser)
    try:
        await _open_predict_upload(page, base)
        if photo is not None:
            await page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
                {"name": "warm.jpg", "mimeType": "image/jpeg", "buffer": photo})
            await page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]').first.wait_for()
            await _rendered(page)
    finally:
        await context.close()


async def _end_sessions(browser, base: str) -> None:
    """Let the closed tabs' sessions end: Streamlit keeps a disconnected session for a reconnect until
    server.disconnectedSessionTTL has passed, and drops it at the next disconnect after that (here a short visit
    of our own, which holds no upload)."""
    await asyncio.sleep(SESSION_TTL_S + 1)
    await _visit(browser, base)
    await asyncio.sleep(2)


async def _memory(base: str, sampler: Sampler, workdir: Path, log) -> list[dict]:
    from playwright.async_api import async_playwright

    cases = memory_cases()
    out = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await _visit(browser, base, synthetic_photo(seed=999))  # the first run imports torch, loads the model
            await _end_sessions(browser, base)
            for name, files in cases.items():
                log(f"  memory: {name} ...")
                folder = workdir / f"case{len(out)}"  # Playwright passes large files by path
                folder.mkdir()
                for n, b, _ in files:
                    (folder / n).write_bytes(b)
                context, page = await _new_page(browser)
                await _open_predict_upload(page, base)
                await asyncio.sleep(1)
                before = sampler.mark()
                await page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
                    [str(folder / n) for n, _, _ in files])
                t0, outcome = time.perf_counter(), "no answer"
                while time.perf_counter() - t0 < STEP_TIMEOUT_MS / 1000:
                    charts = await page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]').count()
                    errors = await _error_boxes(page)
                    too_big = await page.get_by_text(re.compile(r"File must be .* or smaller")).count()
                    if too_big == len(files):
                        outcome = f"all {too_big} refused by the browser (over server.maxUploadSize)"
                        break
                    if (charts == len(files) or errors) and await page.locator(RENDERED).count():
                        outcome = f"{charts} predicted, {len(errors)} refused" + (
                            f": {' '.join(errors[0].split())[:150]}" if errors else "")
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1)
                peak, open_mb, held = sampler.peak(), sampler.now_mb, uploaded_bytes(base)
                await context.close()
                await _end_sessions(browser, base)
                out.append({"case": name, "files": len(files), "bytes": sum(len(b) for _, b, _ in files),
                            "outcome": outcome, "before_mb": before, "peak_mb": peak, "added_mb": peak - before,
                            "open_mb": open_mb, "upload_store_bytes_while_open": held,
                            "after_close_mb": sampler.now_mb, "after_close_added_mb": sampler.now_mb - before,
                            "upload_store_bytes_after_close": uploaded_bytes(base)})
        finally:
            await browser.close()
    return out


# ------------------------------------------------------------------ the command


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--concurrency", type=int, default=6, help="students active at a time (default 6)")
    p.add_argument("--method", choices=sorted(METHOD_LABELS), default="gradcam")
    p.add_argument("--deadline", type=float, default=900, help="seconds the class may take in all (default 900)")
    p.add_argument("--skip", choices=("load", "memory"), action="append", default=[])
    p.add_argument("--server-nice", type=int, default=0,
                   help="adjust the server's niceness by this (nice -n; e.g. -5, as root) where other work shares "
                        "the machine")
    p.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        print(f"{CHROMIUM} is missing: the load benchmark drives a real browser", file=sys.stderr)
        return 2
    if not 1 <= args.students <= 200 or not 1 <= args.concurrency <= 30:
        p.error("--students must be 1..200 and --concurrency 1..30")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result: dict = {"machine": machine(), "command": "python -m benchmarks.load " + " ".join(argv or sys.argv[1:])}
    peaks = []
    with tempfile.TemporaryDirectory(prefix="resnet-demo-load-") as tmp:
        if "load" not in args.skip:
            log(f"load: {args.students} students, {args.concurrency} at a time ...")
            with app_server(Path(tmp) / "load", *SERVER_OPTIONS, niceness=args.server_nice) as (proc, base), \
                    Sampler(proc.pid) as sampler:
                result["server_idle_mb"] = sampler.now_mb
                result["load"] = asyncio.run(_load(base, sampler, args.students, args.concurrency, args.method,
                                                   args.deadline, log))
                peaks.append(sampler.max_mb)
        if "memory" not in args.skip:
            log("memory: one upload at a time ...")
            with app_server(Path(tmp) / "memory", *SERVER_OPTIONS, niceness=args.server_nice) as (proc, base), \
                    Sampler(proc.pid) as sampler:
                result.setdefault("server_idle_mb", sampler.now_mb)
                result["memory"] = asyncio.run(_memory(base, sampler, Path(tmp) / "memory", log))
                peaks.append(sampler.max_mb)
    result["server_peak_mb"] = max(peaks, default=None)
    result["load_average_after"] = list(os.getloadavg())
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    load = result.get("load")
    failed = bool(load and load["errors"])
    return 1 if failed else 0


def report(r: dict) -> None:
    m = r["machine"]
    print(f"machine: {m['cpu']} ({m['cpu_count']} logical CPUs), torch {m['torch']}; load average (1, 5, 15 min) "
          f"before: {', '.join(f'{x:.2f}' for x in m['load_average'] or [])}; after: "
          f"{', '.join(f'{x:.2f}' for x in r['load_average_after'])}")
    if r["server_peak_mb"] is None:
        return
    print(f"server idle: {r['server_idle_mb']:.0f} MB; peak over the whole run: {r['server_peak_mb']:.0f} MB "
          f"(target <= {TARGETS['peak_mb']:.0f}); closed tabs' sessions end after {SESSION_TTL_S} s")
    if load := r.get("load"):
        f = lambda v: "-" if v is None else f"{v:.2f} s"  # noqa: E731
        print(f"load: {load['students']} students, {load['concurrency']} at a time, {load['method']}; "
              f"{load['wall_s']:.0f} s in all")
        print(f"  prediction, in the page: p50 {f(load['predict_p50_s'])}, p95 {f(load['predict_p95_s'])}; "
              f"on the wire: p50 {f(load['predict_server_p50_s'])}, p95 {f(load['predict_server_p95_s'])} "
              f"(target p95 <= {TARGETS['p95_predict_s']:g} s)")
        print(f"  explain,    in the page: p50 {f(load['explain_p50_s'])}, p95 {f(load['explain_p95_s'])}; "
              f"on the wire: p50 {f(load['explain_server_p50_s'])}, p95 {f(load['explain_server_p95_s'])}")
        print(f"  errors: {len(load['errors'])}" + "".join(f"\n    {e}" for e in load["errors"][:10]))
        print(f"  server: {load['server_mb_before']:.0f} MB before, peak {load['server_peak_mb']:.0f} MB, "
              f"{load['server_mb_after']:.0f} MB once every session ended; on a CPU {load['server_cpu_s']:.0f} s "
              f"= {load['server_cpu_cores']:.2f} cores on average; its threads waited "
              f"{load['server_cpu_wait_s']:.0f} s for a CPU")
        print(f"  a top-5 read back: {', '.join(load['top5_example'])}")
    for c in r.get("memory", []):
        print(f"memory: {c['case']}: {c['files']} file(s), {c['bytes'] / 1e6:.1f} MB -> {c['outcome']}")
        print(f"  server {c['before_mb']:.0f} MB before, peak +{c['added_mb']:.0f} MB, {c['open_mb']:.0f} MB with the "
              f"tab open, {c['after_close_added_mb']:+.0f} MB once its session ended; upload store "
              f"{c['upload_store_bytes_while_open'] / 1e6:.1f} MB while open, "
              f"{c['upload_store_bytes_after_close'] / 1e6:.1f} MB after")


if __name__ == "__main__":
    sys.exit(main())
