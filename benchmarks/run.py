"""`python -m benchmarks.run`: the speeds that matter to a class, each against its target, in one table.

    python -m benchmarks.run                       # everything (the two classroom rows take 8 minutes)
    python -m benchmarks.run --skip classroom      # everything else (~15 min on a 2-core CPU)
    python -m benchmarks.run --quick               # small step counts: checks the script, numbers are rough
    python -m benchmarks.run --only train,predict --json out.json

Rows that need what this machine lacks (a CUDA GPU, the real data, a browser) are printed as skipped with
the reason, never left out silently. See BENCHMARKS.md for what each row measures and why. The JSON has the
schema benchmarks.gpu writes (common.Report; the GPU rows carry its ids: throughput.r20, ratio.r20, tta.r20,
...) and is rewritten after each group of rows, so an interrupted run keeps what it measured.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import torch

from .common import Report, Row, Workspace, fmt, machine

GROUPS = ("train", "accuracy-gpu", "classroom", "cold-start", "memory", "predict", "explain", "evaluate", "attack")


def _depths(text: str) -> list[int]:
    from resnet_demo.nets.paper import blocks_per_stage

    try:
        depths = [int(d) for d in text.split(",") if d.strip()]
        for d in depths:
            blocks_per_stage(d)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return depths


def _groups(text: str) -> list[str]:
    chosen = [g.strip() for g in text.split(",") if g.strip()]
    unknown = [g for g in chosen if g not in GROUPS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown row group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few steps and repeats: a check that everything runs")
    p.add_argument("--only", type=_groups, help=f"comma-separated row groups: {', '.join(GROUPS)}")
    p.add_argument("--skip", type=_groups, default=[], help="row groups to leave out (e.g. classroom)")
    p.add_argument("--data-dir", help="folder with the real CIFAR-10 (train.npz/test.npz); default: the usual search "
                                      "($RESNET_DEMO_DATA, ./data, .cache/cifar10)")
    p.add_argument("--depths", type=_depths, default=[20, 56, 110], help="training depths (default 20,56,110)")
    p.add_argument("--explain-depths", type=_depths, default=[20, 56], help="attribution depths (default 20,56)")
    p.add_argument("--json", metavar="OUT", help="also write the rows and the machine to this JSON file")
    return p


def print_table(rows: list[Row], out=sys.stdout) -> None:
    header = ("row", "value", "unit", "target", "met?", "notes")
    cells = [(r.row, fmt(r.value), r.unit, r.target or "-", {True: "yes", False: "NO", None: "-"}[r.met], r.notes)
             for r in rows]
    widths = [max(len(header[i]), *(len(c[i]) for c in cells)) if cells else len(header[i]) for i in range(5)]
    line = lambda c: "  ".join(str(v).ljust(w) if i != 1 else str(v).rjust(w)  # noqa: E731
                               for i, (v, w) in enumerate(zip(c[:5], widths, strict=True))) + "  " + c[5]
    print(line(header), file=out)
    print("  ".join("-" * w for w in widths) + "  " + "-" * 5, file=out)
    for c in cells:
        print(line(c), file=out)


def describe_machine(info: dict) -> str:
    load = ", ".join(f"{x:.2f}" for x in info["load_average"]) if info.get("load_average") else "n/a"
    return (f"CPU: {info['cpu']} ({info['cpu_count']} logical CPUs, torch uses {info['torch_threads']} threads)\n"
            f"GPU: {info['gpu'] or 'none (torch.cuda.is_available() is False)'}\n"
            f"torch {info['torch']}, torchvision {info.get('torchvision', '?')}, Python {info['python']}\n"
            f"load average (1, 5, 15 min): {load}")


def run_groups(args, ws: Workspace, log, report: Report) -> list[Row]:
    from . import accuracy, latency, server, training

    chosen = [g for g in (args.only or GROUPS) if g not in args.skip]
    rows: list[Row] = []

    def section(name: str, fn) -> None:
        log(f"[{name}]")
        t = time.perf_counter()
        report.part(name, "running")
        try:
            result = fn()
            added = result if isinstance(result, list) else [result]
            status = "done"
        except Exception as e:  # noqa: BLE001 - one failed row must not hide the others
            traceback.print_exc(file=sys.stderr)
            added = [Row(f"{name}.error", f"{name}: FAILED", None, "", "", False, f"{type(e).__name__}: {e}")]
            status = "failed"
        rows.extend(added)
        for row in added:
            report.add(row)
        report.part(name, status)
        log(f"[{name}] {time.perf_counter() - t:.0f} s")

    if "train" in chosen:
        section("train", lambda: training.throughput_rows(ws, args.depths, args.quick, log))
    if "accuracy-gpu" in chosen:
        section("accuracy-gpu", lambda: accuracy.gpu_rows(ws, args.depths, log))
    if "cold-start" in chosen or "memory" in chosen:
        section("server", lambda: server.server_rows(ws, args.quick, "cold-start" in chosen, "memory" in chosen, log))
    if "predict" in chosen:
        section("predict", lambda: latency.predict_rows(ws, args.quick, log))
    if "explain" in chosen:
        section("explain", lambda: latency.explain_rows(ws, args.explain_depths, args.quick, log))
    if "evaluate" in chosen:
        section("evaluate", lambda: latency.evaluate_rows(ws, args.quick, log))
    if "attack" in chosen:
        section("attack", lambda: latency.attack_rows(ws, args.quick, log))
    if "classroom" in chosen:  # last: the long one
        section("classroom", lambda: accuracy.cpu_classroom_rows(ws, log))
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    before = machine()
    print(describe_machine(before), flush=True)
    if args.quick:
        print("--quick: small step counts and repeats; these numbers check the script, they are not results",
              flush=True)
    ws = Workspace(args.data_dir)
    print(f"data: {ws.real_data or 'no real CIFAR-10 found (stand-in data for speed rows; accuracy rows skip)'}\n",
          flush=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else before["cpu"]
    report = Report(Path(args.json) if args.json else None, "benchmarks.run", argv, args.quick, device, echo=log)
    report.set("machine", before)
    t0 = time.perf_counter()
    try:
        rows = run_groups(args, ws, log, report)
    finally:
        ws.close()
    total = time.perf_counter() - t0
    after = machine()["load_average"]
    report.record.update(load_average_end=after, argv=argv)
    report.set("total_s", total)
    print()
    print_table(rows)
    print(f"\ntotal {total:.0f} s; load average at the end: {', '.join(f'{x:.2f}' for x in after) if after else 'n/a'}")
    if args.json:
        print(f"wrote {args.json}")
    return 1 if any(r.id.endswith(".error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
