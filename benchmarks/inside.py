"""How long the Inside page, the Paper page's Fig. 7 and the model download make a student wait, on this machine.

    flock /tmp/measure.lock python -m benchmarks.inside [--models resnet20-e100,resnet56-e100] [--repeats 3]

Runs the real app under Streamlit's AppTest (the script run a server does for each interaction, without the
browser's drawing), with the shipped weights and no local data set, as on a fresh laptop. For each model and
view: the first render (which computes: one image through the network, or a knockout on the live test
images) and the median re-render after it (a slider moved: what the 2 s target is about). A knockout click on
a new block is timed separately (one pass over the live images without that block), and so is each export.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, machine

MODELS = ("resnet20-e100", "resnet56-e100", "resnet110-e100", "plain56")
TARGET_S = 2.0


def _app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=600)


def _timed(at) -> float:
    t = time.perf_counter()
    at.run()
    dt = time.perf_counter() - t
    if at.exception or [e for e in at.error if "Something went wrong" in e.value]:
        raise RuntimeError([e.value for e in at.exception] + [e.value for e in at.error])
    return dt


def _switch(at, url_path: str) -> None:
    at._page_hash = next(h for h, info in at._registered_pages.items() if info.get("url_pathname") == url_path)


def inside_rows(model: str, repeats: int) -> list[dict]:
    at = _app()
    at.run()
    _switch(at, "inside")
    at.run()  # the default model's first render: not timed
    at.selectbox(key="model").set_value(model)  # the next run computes for this model
    rows = []
    for view, knob, values in (("maps", "inside_channel", range(1, 1 + repeats)),
                               ("blocks", "inside_block_channel", range(1, 1 + repeats)),
                               ("knockout", None, None)):
        at.session_state["inside_view"] = view
        first = _timed(at)
        if at.selectbox(key="model").value != model:
            raise RuntimeError(f"the page shows {at.selectbox(key='model').value}, not {model}")
        again = []
        for v in values or range(repeats):
            if knob:
                at.slider(key=knob).set_value(v)
            again.append(_timed(at))
        rows.append({"model": model, "what": f"Inside · {view}", "first_s": first, "again_s": statistics.median(again)})
        if view == "knockout":
            labels = list(at.select_slider(key="inside_knockout_block").options)
            clicks = []
            for label in labels[-repeats:]:  # blocks not computed yet: one live pass each
                at.select_slider(key="inside_knockout_block").set_value(label)
                clicks.append(_timed(at))
            rows.append({"model": model, "what": "Inside · knockout, click a new block", "first_s": max(clicks),
                         "again_s": statistics.median(clicks)})
    return rows


def paper_rows(repeats: int) -> list[dict]:
    at = _app()
    at.run()
    _switch(at, "paper")
    first = _timed(at)
    again = statistics.median(_timed(at) for _ in range(repeats))
    return [{"model": "all", "what": "Paper page (with Fig. 7)", "first_s": first, "again_s": again}]


def export_rows(models: list[str]) -> list[dict]:
    from resnet_demo.store.export import export_bytes, onnx_available
    from resnet_demo.store.registry import resolve

    rows = []
    for name in models:
        entry = resolve(name)
        model = entry.load()
        for fmt in ("safetensors", "onnx"):
            if fmt == "onnx" and not onnx_available():
                continue
            t = time.perf_counter()
            data = export_bytes(entry, fmt, model)
            rows.append({"model": name, "what": f"export {fmt} ({len(data) / 1e6:.1f} MB), on click",
                         "first_s": time.perf_counter() - t, "again_s": None})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-export", action="store_true", help="skip the export rows (the ONNX exporter is slow)")
    p.add_argument("--json", help="also write the rows and the machine here")
    args = p.parse_args(argv)
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as tmp:  # no runs, no local data set: a fresh laptop
        os.environ.update(RESNET_DEMO_RUNS=str(Path(tmp) / "runs"), RESNET_DEMO_DATA=str(Path(tmp) / "no-data"),
                          RESNET_DEMO_OFFLINE="1")
        os.environ.pop("RESNET_DEMO_WEIGHTS", None)
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
        info = machine()
        rows = paper_rows(args.repeats)
        for m in models:
            print(f"  {m} ...", file=sys.stderr, flush=True)
            rows += inside_rows(m, args.repeats)
        if not args.no_export:
            rows += export_rows(models)
    info["load_average_after"] = list(os.getloadavg())
    print(f"# {info['cpu']}, {info['torch_threads']} threads, torch {info['torch']}; load average "
          f"{info['load_average'][0]:.1f} before, {info['load_average_after'][0]:.1f} after")
    print(f"| model | what | first render (computes) | again (target <= {TARGET_S:g} s) |")
    print("| --- | --- | ---: | ---: |")
    for r in rows:
        again = "-" if r["again_s"] is None else f"{r['again_s']:.2f} s"
        print(f"| {r['model']} | {r['what']} | {r['first_s']:.2f} s | {again} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    slow = [r for r in rows if r["again_s"] is not None and r["again_s"] > TARGET_S and "click" not in r["what"]]
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
