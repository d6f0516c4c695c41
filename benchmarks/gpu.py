"""`python -m benchmarks.gpu --data-dir DIR --out OUT`: the GPU figures in one command, in under 8 minutes.

1. Throughput for ResNet-20/56/110: the tutorial baseline (benchmarks/training.py: PIL transforms, DataLoader,
   fp32, Adam, batch 128), this repo's train() with the eager step, and with the default step (a CUDA graph
   on a GPU), each the median of several timing windows; which step ran, and the ratios.
2. Host synchronisation: a few steps of the loader and the captured step under
   torch.cuda.set_sync_debug_mode("error"), which raises at the first call that waits for the GPU.
3. Time to Table 6 for ResNet-20, 56 and 110 with the table6 preset: wall time from the train() call (data
   loading and per-epoch evaluation included) to the first epoch whose test accuracy on all 10,000 test images
   reaches Table 6, with every epoch's accuracy and time; each run goes on to the end of its schedule unless
   the time budget (--budget-s, for the whole command) runs out first.

Prints a summary and writes everything as JSON to OUT/results-gpu-<date>.json (results-cpu-... elsewhere).
It reads only the repository and the unpacked data set. `--quick` checks the script anywhere, the CPU
included: tiny synthetic data, ResNet-8, a few steps; its numbers are not results.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .accuracy import time_to_accuracy
from .common import Workspace, machine
from .training import Windows, baseline_throughput, ours_throughput

DEPTHS = (20, 56, 110)
PRESET = "table6"
QUICK_GOAL = 0.15  # synthetic data in --quick: a goal a ResNet-8 reaches in two epochs, to exercise that path


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


def throughput(ws: Workspace, depths: list[int], device: torch.device, quick: bool, deadline: float, log) -> list[dict]:
    import os

    # --quick: 640 images make 2 steps an epoch at batch 256, and a window may not span an epoch's end
    w = Windows(1, 1, 2) if quick else Windows(30, 40, 5)
    workers = 0 if quick else min(8, os.cpu_count() or 2)
    rows = []
    for depth in depths:
        row: dict = {"depth": depth}
        # each fn is called in this iteration; the default argument binds depth all the same
        for name, fn in (("baseline", lambda d=depth: baseline_throughput(ws, d, device, 128, workers, w)),
                         ("eager", lambda d=depth: ours_throughput(ws, d, device, PRESET, w, step="eager")),
                         ("fast", lambda d=depth: ours_throughput(ws, d, device, PRESET, w, step="auto"))):
            if time.perf_counter() > deadline:
                row[name] = {"skipped": "the time budget was spent"}
                continue
            log(f"  throughput ResNet-{depth}: {name} ...")
            try:
                value, extra = fn()
                row[name] = {"images_per_s": round(value), **extra}
            except Exception as e:  # noqa: BLE001 - one failure must not hide the other figures
                row[name] = {"error": f"{type(e).__name__}: {e}"}
        base = row["baseline"].get("images_per_s")
        for name in ("eager", "fast"):
            if base and row[name].get("images_per_s"):
                row[f"{name}_vs_baseline"] = round(row[name]["images_per_s"] / base, 2)
        rows.append(row)
    return rows


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
        for k, (x, y) in zip(range(steps), batches):
            loss, correct = step(x, y, recipe.lr_at(k, 1000))
        verdict = {"steps": steps, "host_syncs": 0}
    except RuntimeError as e:
        verdict = {"steps": steps, "host_syncs": "at least 1", "first": str(e)[:300]}
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize(device)
    return verdict


def time_to_table6(ws: Workspace, depths: list[int], device: torch.device, quick: bool, deadline: float,
                   log) -> list[dict]:
    from resnet_demo.nets.paper import TABLE6_ERROR

    rows = []
    for depth in depths:
        goal = QUICK_GOAL if quick else 1 - TABLE6_ERROR[depth] / 100
        if time.perf_counter() > deadline:
            rows.append({"depth": depth, "goal": goal, "skipped": "the time budget was spent"})
            continue
        log(f"  time to {100 * goal:.2f}%: ResNet-{depth}, {PRESET} preset ...")
        settings = dict(epochs=2, batch_size=64) if quick else {}
        try:
            rows.append(time_to_accuracy(ws.data_dir()[0], ws.new_run_dir(), depth, str(device), PRESET, goal,
                                         deadline, **settings))
        except Exception as e:  # noqa: BLE001
            rows.append({"depth": depth, "goal": goal, "error": f"{type(e).__name__}: {e}"})
    return rows


def summary(record: dict) -> str:
    lines = [f"{record['environment']['device']}, torch {record['environment']['torch']}"
             + (" (--quick: a check of the script, not results)" if record["quick"] else "")]
    for r in record["throughput"]:
        cells = []
        for name in ("baseline", "eager", "fast"):
            c = r[name]
            v = c.get("images_per_s")
            cells.append(f"{name} {v:,} img/s" + (f" [{c['step_path']}]" if c.get("step_path") else "")
                         if v else f"{name}: {c.get('error') or c.get('skipped')}")
        ratios = ", ".join(f"{n} {r[n + '_vs_baseline']}x" for n in ("eager", "fast") if n + "_vs_baseline" in r)
        lines.append(f"ResNet-{r['depth']}: " + "; ".join(cells) + (f" (vs baseline: {ratios})" if ratios else ""))
    lines.append(f"host syncs in the captured step: {record['host_syncs']}")
    for r in record["time_to_table6"]:
        if "history" not in r:
            lines.append(f"ResNet-{r['depth']} to {100 * r['goal']:.2f}%: {r.get('error') or r.get('skipped')}")
            continue
        got = (f"{r['reached_s']:.1f} s (epoch {r['reached_epoch']})" if r["reached_s"] is not None
               else f"not reached (best {100 * r['best_acc']:.2f}%)")
        final = r.get("final_test_accuracy")
        lines.append(f"ResNet-{r['depth']} to {100 * r['goal']:.2f}%: {got}; {len(r['history'])}/{r['epochs']} "
                     f"epochs in {r['wall_s']:.0f} s, {r['status']}"
                     + (f", final {100 * final:.2f}%" if final is not None else "") + f" [{r['step_path']}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="the unpacked CIFAR-10 (train.npz/test.npz or cifar-10-batches-py)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent), help="where the JSON goes")
    p.add_argument("--budget-s", type=float, default=450.0, help="stop whatever still runs after this many seconds")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny synthetic data and a few steps: a check of the script")
    args = p.parse_args(argv)
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
    record = {"command": "python -m benchmarks.gpu " + " ".join(argv if argv is not None else sys.argv[1:]),
              "quick": args.quick, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": args.budget_s,
              "data": ws.data_dir()[1] if args.quick else str(ws.real_data), "preset": PRESET,
              "environment": environment(device)}
    try:
        log("[throughput]")
        record["throughput"] = throughput(ws, depths, device, args.quick, deadline, log)
        try:
            record["host_syncs"] = host_syncs(ws.real_data, depths[0], device)
        except Exception as e:  # noqa: BLE001 - the time-to-Table-6 runs still go ahead
            record["host_syncs"] = {"error": f"{type(e).__name__}: {e}"}
        log("[time to Table 6]")
        record["time_to_table6"] = time_to_table6(ws, depths, device, args.quick, deadline, log)
    finally:
        ws.close()
    record["total_s"] = round(time.perf_counter() - t0, 1)
    print(summary(record))
    print(f"total {record['total_s']:.0f} s")
    kind = "gpu" if device.type == "cuda" else "cpu"
    path = Path(args.out) / f"results-{kind}{'-quick' if args.quick else ''}-{time.strftime('%Y-%m-%d')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
