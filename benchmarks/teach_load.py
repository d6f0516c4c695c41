"""`python -m benchmarks.teach_load`: the Teach page under a class: the memory a tab takes with 100 images, and
the server's latency while five tabs fine-tune at once.

    python -m benchmarks.teach_load                       # 5 tabs, 5 classes x 20 images each, 150 steps
    python -m benchmarks.teach_load --tabs 3 --json out.json

Starts `streamlit run streamlit_app.py` as benchmarks/load.py does (the shipped weights, no data set, an empty
runs folder; a closed tab's session ends 5 s after it closes) and drives it with headless Chromium:

1. baseline: --probes students, one after another, each predict an uploaded photo and explain it (load.py's
   student), with nothing else running;
2. memory: each of --tabs tabs opens Teach, names 5 classes and uploads 20 images to each (96x96 PNGs of
   coloured shapes, 100 a tab); the server's resident memory before and after, divided by the tabs;
3. fine-tunes: every tab presses Train at the same moment (the page's defaults: from the shipped ResNet-20, 150
   steps); for each tab, the time from its click to its held-out score on the page, and the highest place in
   the queue the page showed it. Meanwhile students keep predicting and explaining, one after another: their
   latencies beside the baseline's (on the wire, the server's share: load.py's Wire);
4. the tabs close; the server's memory once their sessions have ended.

The machine's load average is printed before and after: on a shared machine the times say as much about the
neighbours as about the app.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .common import machine, synthetic_photo
from .load import (
    SERVER_OPTIONS,
    Sampler,
    Student,
    _end_sessions,
    _new_page,
    _percentile,
    _rendered,
    app_server,
    cpu_run_and_wait,
    student,
)
from .server import CHROMIUM, CHROMIUM_ARGS

KINDS = ("red square", "green disc", "blue bar", "yellow cross", "purple ring")
COLORS = ((220, 40, 40), (40, 170, 60), (40, 70, 220), (230, 200, 30), (150, 50, 170))
TIMEOUT_MS = 600_000


def shape_photo(kind: int, seed: int, size: int = 96) -> bytes:
    """A PNG of one class: its shape in its colour at a random place and shade on a light background."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(1000 * kind + seed)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(200, 250, 3)))
    draw = ImageDraw.Draw(img)
    s = int(rng.integers(size // 3, size // 2))
    x, y = (int(v) for v in rng.integers(4, size - s - 4, 2))
    fill = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLORS[kind])
    if kind in (0, 1):  # a square, a disc
        (draw.rectangle if kind == 0 else draw.ellipse)([x, y, x + s, y + s], fill=fill)
    elif kind in (2, 3):  # a bar; a cross is a bar and an upright one
        draw.rectangle([x, y + s // 3, x + s, y + 2 * s // 3], fill=fill)
        if kind == 3:
            draw.rectangle([x + s // 3, y, x + 2 * s // 3, y + s], fill=fill)
    else:  # a ring
        draw.ellipse([x, y, x + s, y + s], outline=fill, width=max(3, s // 6))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Tab:
    index: int
    setup_s: float | None = None  # open Teach, name the classes, upload every image
    teach_s: float | None = None  # Train clicked -> held-out score shown (queue wait included)
    core_s: float | None = None  # the fine-tune's own wall time, as its record says (training/teach.py)
    max_place: int = 0  # the highest place in the queue the page showed (0: never waited)
    accuracy: str | None = None
    error: str | None = None


async def _setup(browser, base: str, tab: Tab, per_class: int):
    context, page = await _new_page(browser)
    context.set_default_timeout(TIMEOUT_MS)
    t0 = time.perf_counter()
    await page.goto(base + "/teach", wait_until="commit")
    await page.locator('[data-testid="stMain"] h1').filter(has_text="Teach").wait_for()
    await _rendered(page)
    for _ in range(len(KINDS) - 2):
        await page.get_by_role("button", name="Add a class").click()
        await page.get_by_label(f"Class {_ + 3}", exact=True).wait_for()
        await _rendered(page)
    for j, kind in enumerate(KINDS):
        field = page.get_by_label(f"Class {j + 1}", exact=True)
        await field.fill(kind)
        await field.press("Enter")
        await _rendered(page)
    for j, kind in enumerate(KINDS):
        files = [{"name": f"{kind}-{s}.png", "mimeType": "image/png", "buffer": shape_photo(j, s)}
                 for s in range(per_class)]
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Add images").nth(j)
        await uploader.locator('input[type="file"]').set_input_files(files)
        await page.get_by_text(f"{per_class} images", exact=False).nth(j).wait_for()
        await _rendered(page)
    tab.setup_s = time.perf_counter() - t0
    return context, page


async def _teach(page, tab: Tab) -> None:
    t0 = time.perf_counter()
    await page.get_by_role("button", name="Train", exact=True).click()
    score = page.get_by_text("Held-out accuracy", exact=True)
    while time.perf_counter() - t0 < TIMEOUT_MS / 1000:
        if await score.count():
            tab.teach_s = time.perf_counter() - t0
            metric = page.locator('[data-testid="stMetricValue"]').first
            tab.accuracy = await metric.inner_text() if await metric.count() else None
            text = (await page.locator('[data-testid="stMain"]').inner_text()).replace("\u200b", "")
            if m := re.search(r"held out, in ([\d.]+) s", text):
                tab.core_s = float(m.group(1))
            return
        text = await page.locator('[data-testid="stMain"]').inner_text()
        if m := re.search(r"number (\d+) in the queue", text):
            tab.max_place = max(tab.max_place, int(m.group(1)))
        await asyncio.sleep(0.5)
    raise TimeoutError("no held-out score within the timeout")


async def _probes(browser, base: str, count: int | None, until: asyncio.Event | None, first: int) -> list[Student]:
    """Students one after another: `count` of them, or until `until` is set."""
    out: list[Student] = []
    while (count is not None and len(out) < count) or (until is not None and not until.is_set()):
        s = Student(first + len(out))
        await student(browser, base, s, synthetic_photo(seed=s.index), "gradcam")
        out.append(s)
    return out


def _latencies(students: list[Student]) -> dict:
    ok = [s for s in students if s.error is None]
    pick = lambda attr: [getattr(s, attr) for s in ok if getattr(s, attr) is not None]  # noqa: E731
    return {"students": len(students), "errors": [s.error for s in students if s.error],
            **{f"{what}_{q}_s": _percentile(pick(f"{what}_server_s"), n)
               for what in ("predict", "explain") for q, n in (("p50", 50), ("p95", 95))},
            "predict_server_s": pick("predict_server_s"), "explain_server_s": pick("explain_server_s")}


async def _run(base: str, sampler: Sampler, tabs: int, per_class: int, probes: int, log) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            log(f"baseline: {probes} students predict and explain, nothing else running ...")
            baseline = await _probes(browser, base, probes, None, 0)
            await asyncio.sleep(2)
            before_mb = sampler.mark()
            log(f"memory: {tabs} tabs, {len(KINDS)} classes x {per_class} images each ...")
            state = [Tab(i) for i in range(tabs)]
            opened = [await _setup(browser, base, t, per_class) for t in state]
            await asyncio.sleep(3)
            with_images_mb = sampler.now_mb
            log("fine-tunes: every tab presses Train at once; students keep predicting meanwhile ...")
            (run0, wait0), t0, done = cpu_run_and_wait(sampler.pid), time.perf_counter(), asyncio.Event()
            probing = asyncio.create_task(_probes(browser, base, None, done, 1000))
            results = await asyncio.gather(*(_teach(page, t) for t, (_, page) in zip(state, opened, strict=True)),
                                           return_exceptions=True)
            done.set()
            during = await probing
            wall, (run1, wait1) = time.perf_counter() - t0, cpu_run_and_wait(sampler.pid)
            for t, r in zip(state, results, strict=True):
                t.error = f"{type(r).__name__}: {str(r).splitlines()[0][:200]}" if isinstance(r, Exception) else None
            taught_mb, peak_mb = sampler.now_mb, sampler.peak()
            for context, _ in opened:
                await context.close()
            await _end_sessions(browser, base)
        finally:
            await browser.close()
    return {"tabs": tabs, "classes": len(KINDS), "images_per_tab": len(KINDS) * per_class,
            "server_mb_before_tabs": before_mb, "server_mb_with_images": with_images_mb,
            "mb_per_tab_with_images": (with_images_mb - before_mb) / tabs, "server_mb_after_teach": taught_mb,
            "mb_per_tab_after_teach": (taught_mb - before_mb) / tabs, "server_peak_mb": peak_mb,
            "server_mb_after_close": sampler.now_mb, "fine_tunes_wall_s": wall, "server_cpu_s": run1 - run0,
            "server_cpu_wait_s": wait1 - wait0, "tab_results": [asdict(t) for t in state],
            "baseline": _latencies(baseline), "during_fine_tunes": _latencies(during)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.teach_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--tabs", type=int, default=5, help="tabs that teach at once (default 5)")
    p.add_argument("--per-class", type=int, default=20, help="images per class (5 classes; default 20)")
    p.add_argument("--probes", type=int, default=3, help="students predicting for the baseline (default 3)")
    p.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        print(f"{CHROMIUM} is missing: this benchmark drives a real browser", file=sys.stderr)
        return 2
    if not 1 <= args.tabs <= 30 or not 5 <= args.per_class <= 60:
        p.error("--tabs must be 1..30 and --per-class 5..60")

    def log(msg: str) -> None:
        print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)

    command = "python -m benchmarks.teach_load " + " ".join(argv or sys.argv[1:])
    result: dict = {"machine": machine(), "command": command}
    with tempfile.TemporaryDirectory(prefix="resnet-demo-teach-load-") as tmp:
        with app_server(Path(tmp), *SERVER_OPTIONS) as (proc, base), Sampler(proc.pid) as sampler:
            result["server_idle_mb"] = sampler.now_mb
            result["teach"] = asyncio.run(_run(base, sampler, args.tabs, args.per_class, args.probes, log))
    result["load_average_after"] = list(os.getloadavg())
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    errors = [t for t in result["teach"]["tab_results"] if t["error"]]
    return 1 if errors else 0


def report(r: dict) -> None:
    m, t = r["machine"], r["teach"]
    f = lambda v: "-" if v is None else f"{v:.2f} s"  # noqa: E731
    print(f"machine: {m['cpu']} ({m['cpu_count']} logical CPUs), torch {m['torch']}; load average (1, 5, 15 min) "
          f"before: {', '.join(f'{x:.2f}' for x in m['load_average'] or [])}; after: "
          f"{', '.join(f'{x:.2f}' for x in r['load_average_after'])}")
    print(f"memory: server idle {r['server_idle_mb']:.0f} MB; {t['server_mb_before_tabs']:.0f} MB before the tabs; "
          f"{t['tabs']} tabs of {t['images_per_tab']} images: +{t['mb_per_tab_with_images']:.1f} MB a tab, "
          f"+{t['mb_per_tab_after_teach']:.1f} MB a tab once taught; {t['server_mb_after_close']:.0f} MB once the "
          f"tabs' sessions ended (peak {t['server_peak_mb']:.0f} MB)")
    for tab in t["tab_results"]:
        print(f"  tab {tab['index']}: set up in {f(tab['setup_s'])}; click to score {f(tab['teach_s'])}, of which the "
              f"fine-tune itself {f(tab['core_s'])} (queue place up to {tab['max_place']}); held out "
              f"{tab['accuracy']}" + (f"; ERROR {tab['error']}" if tab["error"] else ""))
    for name in ("baseline", "during_fine_tunes"):
        s = t[name]
        print(f"{name}: {s['students']} students; on the wire predict p50 {f(s['predict_p50_s'])}, p95 "
              f"{f(s['predict_p95_s'])}; explain p50 {f(s['explain_p50_s'])}, p95 {f(s['explain_p95_s'])}; "
              f"errors {len(s['errors'])}")
    print(f"fine-tunes: {t['fine_tunes_wall_s']:.0f} s from the clicks to the last score; the server used "
          f"{t['server_cpu_s']:.0f} s of CPU and its threads waited {t['server_cpu_wait_s']:.0f} s for one")


if __name__ == "__main__":
    sys.exit(main())
