"""Retrain the shipped models on one GPU, several trainings side by side, then ship each finished one.

By default the seven models the app ships: ResNet-20/32/44/56/110 with the table6 preset (each depth as long as
it needs to reach Table 6) and the plain nets 20 and 56 with the 40-epoch fast preset, as Fig. 6 compares
them with the 40-epoch ResNet histories. Each run's epochs are its preset's for its depth (recipes.py). The
longest runs start first. Several trainings run as separate processes (`--parallel`), so one's start-up and
per-epoch evaluation overlap another's steps. A time budget (default: one 10-minute GPU call, less a minute
for start-up and shipping) stops whatever is still running with SIGTERM, which makes the trainer save a
resumable checkpoint; run the same command again (it resumes what has a checkpoint) to continue. Everything
goes under --out:

    python scripts/train_all.py --data-dir D --out OUT --fp16
    python scripts/train_all.py --data-dir D --out OUT --plan     # the queue, its GPU work and whether it fits

The plan is an estimate from a stated throughput (--assume-images-per-s for ResNet-20; a depth-d step costs
about d/20 of it), not a measurement: `python -m benchmarks.gpu` measures the throughput.
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the recipes, for the plan

# The shipped models and the preset each is trained with (docs/GPU.md).
SHIPPED = {"resnet110": "table6", "resnet56": "table6", "resnet32": "table6", "resnet44": "table6",
           "plain56": "fast", "resnet20": "table6", "plain20": "fast"}

# The plan's assumptions, each stated in its output.
ASSUMED_R20_IMAGES_PER_S = 200_000  # the goal for ResNet-20 on one large GPU (BENCHMARKS.md), not a measurement
START_S = 20.0    # per run, off the GPU: Python and torch, the data to the device, cuDNN's autotuning, the capture
SHIP_S = 15.0     # `ship` of the last run to finish: a fresh process and one more pass over the test set
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000
EVAL_COST = 1 / 3  # a test image (forward only) against a training image (forward, backward, update)


def parse_model(name: str) -> list[str]:
    m = re.fullmatch(r"(resnet|plain)(\d+)(-B)?", name)
    if not m:
        raise SystemExit(f"bad model name {name!r}: use resnet20, plain56, resnet56-B, ...")
    args = ["--depth", m.group(2)]
    if m.group(1) == "plain":
        args.append("--plain")
    if m.group(3):
        args += ["--shortcut", "B"]
    return args


@dataclass
class Planned:
    name: str
    preset: str
    epochs: int
    gpu_s: float      # its GPU work alone at the assumed throughput, per-epoch evaluations included
    start: float = 0.0
    end: float = 0.0

    @property
    def r20_epochs(self) -> float:
        return self.gpu_s * ASSUMED_R20_IMAGES_PER_S / TRAIN_IMAGES


def planned(name: str, preset: str, args) -> Planned:
    """One run: its preset's epochs for its depth (or --epochs), and its GPU seconds at the assumed rate."""
    from resnet_demo.training.recipes import get_recipe

    depth = int(parse_model(name)[1])
    images = min(args.subset or TRAIN_IMAGES, TRAIN_IMAGES)
    epochs = args.epochs or get_recipe(preset, "cuda").epochs_for(depth, train_images=images)
    evals = epochs // args.eval_every if args.eval_every else 0
    images_seen = epochs * images + evals * TEST_IMAGES * EVAL_COST
    return Planned(name, preset, epochs, images_seen * depth / 20 / args.assume_images_per_s)


def schedule(runs: list[Planned], lanes: int) -> float:
    """Longest first, `lanes` at a time, sharing the GPU: each run spends START_S off the GPU, then its work
    at 1/k of the GPU while k runs are on it. Fills in each run's start and end; returns the makespan."""
    queue = sorted(runs, key=lambda r: -r.gpu_s)
    now, left, on_gpu, starting = 0.0, {}, {}, []  # left: GPU seconds to go; starting: heap of (ready at, name)
    by_name = {r.name: r for r in runs}
    while queue or on_gpu or starting:
        while queue and len(on_gpu) + len(starting) < lanes:
            r = queue.pop(0)
            r.start = now
            heapq.heappush(starting, (now + START_S, r.name))
        k = len(on_gpu)
        next_ready = starting[0][0] if starting else float("inf")
        next_done = now + min(left.values()) * k if k else float("inf")
        step = min(next_ready, next_done) - now
        for name in on_gpu:
            left[name] -= step / k
        now += step
        while starting and starting[0][0] <= now + 1e-9:
            name = heapq.heappop(starting)[1]
            on_gpu[name], left[name] = True, by_name[name].gpu_s
        for name in [n for n in on_gpu if left[n] <= 1e-9]:
            del on_gpu[name], left[name]
            by_name[name].end = now
    return now


def print_plan(runs: list[Planned], args) -> bool:
    """The plan, and whether it fits the budget."""
    makespan = schedule(runs, args.parallel)
    total = sum(r.gpu_s for r in runs)
    print(f"assumes: ResNet-20 trains at {args.assume_images_per_s:,.0f} images/s (--assume-images-per-s; the goal "
          f"on one large GPU, not a measurement), a depth-d step costs d/20 of ResNet-20's, {START_S:.0f} s to start "
          f"each run, a test image a third of a training image, {SHIP_S:.0f} s to ship the last")
    for r in sorted(runs, key=lambda r: r.start):
        print(f"{r.name}: {r.preset} preset, {r.epochs} epochs, about {r.r20_epochs:.0f} ResNet-20 epochs of work "
              f"({r.gpu_s:.0f} s of GPU alone); runs from {r.start:.0f} s to {r.end:.0f} s")
    done = makespan + SHIP_S
    fits = done <= args.budget_s
    print(f"in all about {sum(r.r20_epochs for r in runs):.0f} ResNet-20 epochs, {total:.0f} s of GPU work; "
          f"{args.parallel} at a time, all done in about {done:.0f} s of the {args.budget_s:.0f} s budget: "
          + ("fits" if fits else "does NOT fit (what still trains then stops with a checkpoint; run the same "
                                 "command again to continue)")
          + "; an estimate, not a measurement", flush=True)
    return fits


def run_queue(queue: list[str], presets: dict[str, str], args) -> dict:
    out = Path(args.out)
    runs, weights = out / "runs", out / "weights"
    runs.mkdir(parents=True, exist_ok=True)
    running: dict[str, subprocess.Popen] = {}
    results: dict[str, dict] = {}
    t0 = time.time()
    env = {**os.environ, "RESNET_DEMO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    while queue or running:
        while queue and len(running) < args.parallel and time.time() - t0 < args.budget_s:
            name = queue.pop(0)
            running[name] = start_run(name, presets[name], runs / name, args, env, t0)
        if not queue or len(running) >= args.parallel:
            time.sleep(2)
        if time.time() - t0 > args.budget_s:
            for name, proc in running.items():
                if proc.poll() is None and not results.get(name, {}).get("signalled"):
                    print(f"[{time.time() - t0:6.0f}s] budget spent: stopping {name} (it saves a checkpoint)",
                          flush=True)
                    proc.send_signal(signal.SIGTERM)
                    results[name] = {"signalled": True}
            queue.clear()
        for name, proc in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            results[name] = finished(name, proc, runs, weights, args, env, t0)
    return results


def start_run(name: str, preset: str, run_dir: Path, args, env: dict, t0: float) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "resnet_demo", "train", *parse_model(name), "--preset", preset,
           "--device", args.device, "--data-dir", args.data_dir, "--out", str(run_dir), "--quiet",
           "--no-download", *args.extra.split()]
    cmd += ["--epochs", str(args.epochs)] if args.epochs else []
    cmd += ["--subset", str(args.subset)] if args.subset else []
    cmd += ["--eval-every", str(args.eval_every)] if args.eval_every != 1 else []
    cmd += ["--resume"] if args.resume or (run_dir / "checkpoint.safetensors").exists() else []
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "train.log", "a")
    print(f"[{time.time() - t0:6.0f}s] start {name}: {' '.join(cmd[1:])}", flush=True)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def finished(name: str, proc: subprocess.Popen, runs: Path, weights: Path, args, env: dict, t0: float) -> dict:
    metrics = runs / name / "metrics.json"
    if not metrics.exists():
        tail = (runs / name / "train.log").read_text()[-300:]
        print(f"[{time.time() - t0:6.0f}s] {name} ended without finishing (exit {proc.returncode}): {tail}", flush=True)
        return {"status": "unfinished", "exit": proc.returncode}
    rec = json.loads(metrics.read_text())
    print(f"[{time.time() - t0:6.0f}s] done {name}: test acc {100 * rec['test_accuracy']:.2f}% "
          f"in {rec['wall_time_s']:.0f}s", flush=True)
    ship = [sys.executable, "-m", "resnet_demo", "ship", str(runs / name), "--name", name,
            "--data-dir", args.data_dir, "--no-download"] + (["--fp16"] if args.fp16 else [])
    r = subprocess.run(ship, cwd=ROOT, env={**env, "RESNET_DEMO_WEIGHTS": str(weights)},
                       capture_output=True, text=True)
    print(r.stdout.strip() or r.stderr.strip()[-500:], flush=True)
    return {"status": "shipped" if r.returncode == 0 else "ship failed", "test_accuracy": rec["test_accuracy"],
            "wall_time_s": rec["wall_time_s"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(SHIPPED),
                   help="comma-separated: resnet20,resnet56,plain20,... (default: the seven shipped models)")
    p.add_argument("--preset", help="one preset for every model (default: table6 for ResNets, fast for plain nets)")
    p.add_argument("--epochs", type=int, help="one length for every model (default: each preset's for its depth)")
    p.add_argument("--subset", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True, help="runs go to OUT/runs/<model>, shipped files to OUT/weights")
    p.add_argument("--parallel", type=int, default=3, help="trainings at a time on the GPU (default 3)")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="SIGTERM what still runs after this many seconds (default 540: a 10-minute GPU call, less a "
                        "minute for start-up and shipping)")
    p.add_argument("--eval-every", type=int, default=1,
                   help="each run's per-epoch test curve every N epochs (default 1: the app shows the curves of the "
                        "shipped histories; 0: only each run's final evaluation)")
    p.add_argument("--assume-images-per-s", type=float, default=ASSUMED_R20_IMAGES_PER_S,
                   help="the plan's ResNet-20 training throughput (default: the 200,000 images/s goal)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--fp16", action="store_true", help="ship float16 weights")
    p.add_argument("--extra", default="", help="extra arguments for every `train`, e.g. '--step eager'")
    p.add_argument("--plan", action="store_true",
                   help="print the queue, its GPU work and whether it fits; train nothing")
    args = p.parse_args()
    if args.parallel < 1 or args.eval_every < 0 or args.assume_images_per_s <= 0:
        raise SystemExit("--parallel and --assume-images-per-s must be positive, --eval-every 0 or more")

    presets = {m: args.preset or SHIPPED.get(m, "fast" if m.startswith("plain") else "table6")
               for m in args.models.split(",") if m}
    plan = [planned(m, presets[m], args) for m in presets]
    print_plan(plan, args)
    if args.plan:
        return 0
    queue = [r.name for r in sorted(plan, key=lambda r: r.start)]  # longest first: the shortest makespan
    results = run_queue(queue, presets, args)
    (Path(args.out) / "summary.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
