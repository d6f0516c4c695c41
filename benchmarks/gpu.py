"""`python -m benchmarks.gpu --data-dir DIR --out OUT`: the GPU figures in one command, in under 8 minutes.

1. Throughput for ResNet-20/56/110: the tutorial baseline (benchmarks/training.py: PIL transforms, DataLoader,
   fp32, Adam, batch 128), this repo's train() with the eager step, and with the default step (a CUDA graph
   on a GPU), each the median of several timing windows; which step ran, and the ratios.
2. Host synchronisation: a few steps of the loader and the captured step under
   torch.cuda.set_sync_debug_mode("error"), which raises at the first call that waits for the GPU.
3. Time to Table 6 for ResNet-20, 56 and 110 with the table6 preset, trained as a GPU trains it, without the
   per-epoch test curve (--eval-every 0): the wall time from the train() call (data loading included) to the
   end of the final evaluation on all 10,000 test images, when that reaches Table 6; each epoch's training
   accuracy and time. A run still training when the time budget (--budget-s, for the whole command) is spent
   is stopped and reported as not reached.
4. `--compile` on the GPU (throughput.r20.compiled): the compiled network inside the captured step, its fused
   BatchNorm/ReLU/add against the default step's throughput.r20. Last, as it costs a compile and is measured only
   for the record: `--compile` becomes the default only if this shows it faster. On a CPU it is skipped.

`--parts` runs some parts only (a second call finishing what a first one's budget left), into a file of its own.

Every figure has a stable id (throughput.r20, ratio.r20, tta.r20, ...; benchmarks/common.py, figure_id) and is
printed as soon as it is measured. The JSON (OUT/results-gpu-<date>.json; results-cpu-... elsewhere) is
rewritten atomically after each figure, so a run cut off at any point leaves a valid file of what it measured
(`parts` says which parts were done). It reads only the repository and the unpacked data set. `--quick`
checks the script anywhere, the CPU included: tiny synthetic data, ResNet-8, a few steps, the same ids; its
numbers are not results.
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch

from .accuracy import time_to_accuracy
from .common import Report, Row, Workspace, figure_id, machine
from .training import Windows, baseline_throughput, ours_throughput

DEPTHS = (20, 56, 110)
PRESET = "table6"
EVAL_EVERY = 0  # no per-epoch test curve: the final evaluation decides, as on a GPU (docs/GPU.md)
QUICK_GOAL = 0.15  # synthetic data in --quick: a goal a ResNet-8 reaches in two epochs, to exercise that path
PARTS = ("throughput", "host_syncs", "time_to_table6", "compiled")
WINDOWS = Windows(30, 40, 5)  # 30 warm-up steps, then 5 timed windows of 40 steps
QUICK_WINDOWS = Windows(1, 1, 2)  # --quick: 640 images make 2 steps an epoch at batch 256, and a window may not
                                  # span an epoch's end
COMPILED_DEPTH = 20  # one depth: a compile takes about a minute, and depth 20 is where launches weigh most
SPENT = "skipped: the time budget was spent"


class QuickWorkspace(Workspace):
    """--quick: 640 synthetic training images and 320 test images instead of CIFAR-10."""

    def __init__(self):
        from resnet_demo.data.cifar import save_npz_pair, synthetic_cifar10

        super().__init__(None)
        self.real_data = save_npz_pair(synthetic_cifar10(640, 320, seed=0), self.root / "quick")

    def data_dir(self) -> tuple[Path, str]:
        return self.real_data, "tiny synthetic stand-in (--quick)"


def environment(device: torch.device) -> dict:
    info = machine()
    info["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else info["cpu"]
    info["cudnn"] = torch.backends.cudnn.version() if device.type == "cuda" else None
    return info


def _measure(name: str, fn, deadline: float) -> dict:
    if time.perf_counter() > deadline:
        return {"skipped": "the time budget was spent"}
    try:
        value, extra = fn()
        return {"images_per_s": round(value), **extra}
    except Exception as e:  # noqa: BLE001 - one failure must not hide the other figures
        return {"error": f"{type(e).__name__}: {e}"}


def _throughput_row(depth: int, name: str, cell: dict) -> Row:
    variant = {"fast": None}.get(name, name)
    what = {"baseline": "tutorial baseline", "eager": "train(), eager step", "fast": "train(), default step",
            "compiled": "train(), --compile (inside the captured step)"}[name]
    extra = {k: v for k, v in cell.items() if k != "images_per_s"} | ({"variant": variant} if variant else {})
    notes = (f"skipped: {cell['skipped']}" if "skipped" in cell else f"failed: {cell['error']}" if "error" in cell
             else f"batch {cell.get('batch_size')}"
             + (f", {cell['vs_default_step']}x the default step" if "vs_default_step" in cell else ""))
    return Row(figure_id("throughput", depth, variant), f"ResNet-{depth} training, {what}", cell.get("images_per_s"),
               "img/s", notes=notes, extra=extra)


def _ratio_row(depth: int, name: str, row: dict) -> Row:
    key = f"{name}_vs_baseline"
    variant = None if name == "fast" else name
    value = row.get(key)
    return Row(figure_id("ratio", depth, variant), f"ResNet-{depth}: {'default' if name == 'fast' else name} step / "
               f"tutorial baseline", value, "x", ">= 13x" if variant is None else "",
               None if value is None or variant else value >= 13, "" if value is not None else "not measured: "
               "a throughput above is missing", extra={"step_path": row[name].get("step_path"), "variant": variant})


def throughput(ws: Workspace, depths: list[int], device: torch.device, quick: bool, deadline: float, log,
               report: Report) -> None:
    import os

    w = QUICK_WINDOWS if quick else WINDOWS
    workers = 0 if quick else min(8, os.cpu_count() or 2)
    details = report.record.setdefault("throughput", [])
    for depth in depths:
        row: dict = {"depth": depth}
        for name, fn in (("baseline", partial(baseline_throughput, ws, depth, device, 128, workers, w)),
                         ("eager", partial(ours_throughput, ws, depth, device, PRESET, w, step="eager",
                                           eval_every=EVAL_EVERY)),
                         ("fast", partial(ours_throughput, ws, depth, device, PRESET, w, step="auto",
                                          eval_every=EVAL_EVERY))):
            log(f"  throughput ResNet-{depth}: {name} ...")
            row[name] = _measure(name, fn, deadline)
            report.add(_throughput_row(depth, name, row[name]))
        base = row["baseline"].get("images_per_s")
        for name in ("fast", "eager"):
            if base and row[name].get("images_per_s"):
                row[f"{name}_vs_baseline"] = round(row[name]["images_per_s"] / base, 2)
            report.add(_ratio_row(depth, name, row))
        details.append(row)
        report.save()


def compiled(ws: Workspace, depth: int, device: torch.device, deadline: float, log, report: Report) -> None:
    """throughput.rD.compiled, and its ratio to the default step's throughput.rD where this run measured that."""
    if device.type != "cuda":
        cell = {"skipped": "needs a CUDA device (on a CPU --compile is an eager step of its own)"}
    else:
        log(f"  throughput ResNet-{depth}: compiled ...")
        cell = _measure("compiled", partial(ours_throughput, ws, depth, device, PRESET, WINDOWS,
                                            step="auto", eval_every=EVAL_EVERY, compile=True), deadline)
    default = report.value(figure_id("throughput", depth))
    if cell.get("images_per_s") and default:
        cell["vs_default_step"] = round(cell["images_per_s"] / default, 3)
    report.add(_throughput_row(depth, "compiled", cell))  # the row's extra keeps the whole cell


def host_syncs(data_dir: Path, depth: int, device: torch.device, steps: int = 5) -> dict:
    """Run `steps` batches of the loader and the captured step with CUDA's sync debug mode set to raise."""
    if device.type != "cuda":
        return {"skipped": "needs a CUDA device"}
    from resnet_demo.base.device import resolve_precision
    from resnet_demo.data.cifar import load_cifar10
    from resnet_demo.data.loader import DeviceLoader
    from resnet_demo.nets.model import Arch, CifarResNet
    from resnet_demo.training.graph_step import GraphCaptureError, GraphStep
    from resnet_demo.training.recipes import get_recipe

    recipe = get_recipe(PRESET, "cuda", depth=depth)
    loader = DeviceLoader(load_cifar10(str(data_dir)).train, recipe.batch_size, device, seed=0,
                          channels_last=True)
    model = CifarResNet(Arch(depth)).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                          weight_decay=recipe.weight_decay)
    try:
        step = GraphStep(model, opt, recipe, resolve_precision("auto", device), recipe.batch_size, device)
    except GraphCaptureError as e:
        return {"error": f"capture failed: {e}"}
    batches = loader.epoch(0)
    next(batches)  # the epoch's draws go to the device at its start, once: not part of a step
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for k, (x, y) in zip(range(steps), batches, strict=False):  # the epoch has more
            loss, correct = step(x, y, recipe.lr_at(k, 1000))
        verdict = {"steps": steps, "host_syncs": 0}
    except RuntimeError as e:
        verdict = {"steps": steps, "host_syncs": "at least 1", "first": str(e)[:300]}
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize(device)
    return verdict


def _tta_row(r: dict) -> Row:
    depth, goal = r["depth"], r["goal"]
    name = f"ResNet-{depth}: seconds to {100 * goal:.2f}% test accuracy ({PRESET} preset)"
    if "history" not in r:
        return Row(figure_id("tta", depth), name, None, "s", notes=f"failed: {r['error']}" if "error" in r
                   else f"skipped: {r['skipped']}", extra=r)
    if r["reached_s"] is not None:
        notes = (f"{100 * r['reached_acc']:.2f}% at {r['reached_at']} (epoch {r['reached_epoch']} of {r['epochs']})"
                 f"; from the train() call")
    else:
        best = r["best_acc"]
        notes = (f"not reached: {r['status']} after {len(r['history'])} of {r['epochs']} epochs"
                 + (f", best {100 * best:.2f}%" if best is not None else ", never evaluated"))
    return Row(figure_id("tta", depth), name, r["reached_s"], "s", notes=notes,
               extra={k: v for k, v in r.items() if k != "history"} | {"epochs_done": len(r["history"])})


def time_to_table6(ws: Workspace, depths: list[int], device: torch.device, quick: bool, deadline: float,
                   log, report: Report) -> None:
    from resnet_demo.nets.paper import TABLE6_ERROR

    details = report.record.setdefault("time_to_table6", [])
    for depth in depths:
        goal = QUICK_GOAL if quick else 1 - TABLE6_ERROR[depth] / 100
        if time.perf_counter() > deadline:
            r = {"depth": depth, "goal": goal, "skipped": "the time budget was spent"}
        else:
            log(f"  time to {100 * goal:.2f}%: ResNet-{depth}, {PRESET} preset ...")
            settings = dict(epochs=2, batch_size=64) if quick else {}
            try:
                r = time_to_accuracy(ws.data_dir()[0], ws.new_run_dir(), depth, str(device), PRESET, goal,
                                     deadline, eval_every=EVAL_EVERY, **settings)
            except Exception as e:  # noqa: BLE001
                r = {"depth": depth, "goal": goal, "error": f"{type(e).__name__}: {e}"}
        details.append(r)
        report.add(_tta_row(r))


def summary(record: dict) -> str:
    lines = [f"{record['device']}, torch {record['torch']}, step {record['step_path']}"
             + (" (--quick: a check of the script, not results)" if record["quick"] else "")]
    lines += [f"  {r['id']:<26} {'-' if r['value'] is None else format(r['value'], ',.6g'):>12} {r['unit']:<6} "
              f"{r['notes']}" for r in record["rows"]]
    lines.append(f"host syncs in the captured step: {record.get('host_syncs')}")
    undone = [p for p in PARTS if record["parts"].get(p) == "pending"]
    if undone:
        lines.append(f"not done: {', '.join(undone)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="the unpacked CIFAR-10 (train.npz/test.npz or cifar-10-batches-py)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent), help="where the JSON goes")
    p.add_argument("--budget-s", type=float, default=450.0, help="stop whatever still runs after this many seconds")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny synthetic data and a few steps: a check of the script")
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"which parts to run, comma-separated (default: all of {','.join(PARTS)})")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    if not parts or set(parts) - set(PARTS):
        p.error(f"--parts: choose among {', '.join(PARTS)}")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    deadline = t0 + args.budget_s
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    ws = QuickWorkspace() if args.quick else Workspace(args.data_dir)
    if ws.real_data is None:
        ws.close()
        print(f"error: no CIFAR-10 found (--data-dir {args.data_dir}); unpack it and pass its folder", file=sys.stderr)
        return 2
    depths = [8] if args.quick else list(DEPTHS)
    kind = "gpu" if device.type == "cuda" else "cpu"
    some = "" if set(parts) == set(PARTS) else "-" + "-".join(x for x in PARTS if x in parts)
    path = Path(args.out) / f"results-{kind}{'-quick' if args.quick else ''}-{time.strftime('%Y-%m-%d')}{some}.json"
    env = environment(device)
    report = Report(path, "benchmarks.gpu", argv, args.quick, env["device"], echo=lambda s: print(s, flush=True))
    report.record.update(budget_s=args.budget_s, data=ws.data_dir()[1] if args.quick else str(ws.real_data),
                         preset=PRESET, eval_every=EVAL_EVERY, environment=env)
    for part in PARTS:
        report.part(part, "pending" if part in parts else "not asked for")
    print(f"writing {path} as it goes", flush=True)
    try:
        if "throughput" in parts:
            log("[throughput]")
            throughput(ws, depths, device, args.quick, deadline, log, report)
            report.part("throughput", "done")
        if "host_syncs" in parts:
            try:
                report.set("host_syncs", host_syncs(ws.real_data, depths[0], device))
            except Exception as e:  # noqa: BLE001 - the time-to-Table-6 runs still go ahead
                report.set("host_syncs", {"error": f"{type(e).__name__}: {e}"})
            report.part("host_syncs", "done")
        if "time_to_table6" in parts:
            log("[time to Table 6]")
            time_to_table6(ws, depths, device, args.quick, deadline, log, report)
            report.part("time_to_table6", "done")
        if "compiled" in parts:
            log("[--compile]")
            compiled(ws, depths[0] if args.quick else COMPILED_DEPTH, device, deadline, log, report)
            report.part("compiled", "done")
    finally:
        ws.close()
    report.set("total_s", round(time.perf_counter() - t0, 1))
    print(summary(report.record))
    print(f"total {report.record['total_s']:.0f} s")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
