"""Retrain the shipped models on one GPU, several trainings side by side, then ship each finished one.

By default the seven models the app ships: ResNet-20/32/44/56/110 with the table6 preset (each depth as long as
it needs to reach Table 6) and the plain nets 20 and 56 with the 40-epoch fast preset, as Fig. 6 compares
them with the 40-epoch ResNet histories. The longest runs start first. Several trainings run as separate
processes (`--parallel`), so one's start-up and per-epoch evaluation overlap another's steps. A time budget
stops whatever is still running with SIGTERM, which makes the trainer save a resumable checkpoint; run the same
command again (it resumes what has a checkpoint) to continue. Everything goes under --out:

    python scripts/train_all.py --data-dir D --out OUT --parallel 3 --budget-s 540 --fp16
    python scripts/train_all.py --data-dir D --out OUT --plan     # the queue and its estimated GPU work
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the recipes, for the plan


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


# The shipped models and the preset each is trained with (docs/GPU.md).
SHIPPED = {"resnet110": "table6", "resnet56": "table6", "resnet32": "table6", "resnet44": "table6",
           "plain56": "fast", "resnet20": "table6", "plain20": "fast"}


def work(name: str, preset: str, epochs: int | None) -> float:
    """A run's GPU work in ResNet-20 epochs: its epochs times its layers over 20 (the step time grows about so)."""
    from resnet_demo.training.recipes import get_recipe

    depth = int(parse_model(name)[1])
    return get_recipe(preset, "cuda", epochs, depth=depth).epochs * depth / 20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(SHIPPED),
                   help="comma-separated: resnet20,resnet56,plain20,... (default: the seven shipped models)")
    p.add_argument("--preset", help="one preset for every model (default: table6 for ResNets, fast for plain nets)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--subset", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True, help="runs go to OUT/runs/<model>, shipped files to OUT/weights")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--budget-s", type=float, default=1e9, help="SIGTERM what still runs after this many seconds")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--fp16", action="store_true", help="ship float16 weights")
    p.add_argument("--extra", default="", help="extra arguments for every `train`, e.g. '--step eager'")
    p.add_argument("--plan", action="store_true", help="print the queue and its estimated GPU work, train nothing")
    args = p.parse_args()

    presets = {m: args.preset or SHIPPED.get(m, "fast" if m.startswith("plain") else "table6")
               for m in args.models.split(",") if m}
    queue = sorted(presets, key=lambda m: -work(m, presets[m], args.epochs))  # longest first: the shortest makespan
    total = sum(work(m, presets[m], args.epochs) for m in queue)
    for m in queue:
        print(f"{m}: {presets[m]} preset, about {work(m, presets[m], args.epochs):.0f} ResNet-20 epochs of work")
    print(f"in all about {total:.0f} ResNet-20 epochs; at 200k images/s (the goal for ResNet-20 alone on a large GPU) "
          f"that is {total * 50_000 / 200_000:.0f} s of GPU work, an estimate, not a measurement", flush=True)
    if args.plan:
        return 0
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
            run_dir = runs / name
            cmd = [sys.executable, "-m", "resnet_demo", "train", *parse_model(name), "--preset", presets[name],
                   "--device", args.device, "--data-dir", args.data_dir, "--out", str(run_dir), "--quiet",
                   "--no-download", *args.extra.split()]
            cmd += ["--epochs", str(args.epochs)] if args.epochs else []
            cmd += ["--subset", str(args.subset)] if args.subset else []
            cmd += ["--resume"] if args.resume or (run_dir / "checkpoint.safetensors").exists() else []
            run_dir.mkdir(parents=True, exist_ok=True)
            log = open(run_dir / "train.log", "a")
            print(f"[{time.time() - t0:6.0f}s] start {name}: {' '.join(cmd[1:])}", flush=True)
            running[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
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
            metrics = runs / name / "metrics.json"
            if metrics.exists():
                rec = json.loads(metrics.read_text())
                print(f"[{time.time() - t0:6.0f}s] done {name}: test acc {100 * rec['test_accuracy']:.2f}% "
                      f"in {rec['wall_time_s']:.0f}s", flush=True)
                ship = [sys.executable, "-m", "resnet_demo", "ship", str(runs / name), "--name", name,
                        "--data-dir", args.data_dir, "--no-download"] + (["--fp16"] if args.fp16 else [])
                r = subprocess.run(ship, cwd=ROOT, env={**env, "RESNET_DEMO_WEIGHTS": str(weights)},
                                   capture_output=True, text=True)
                print(r.stdout.strip() or r.stderr.strip()[-500:], flush=True)
                results[name] = {"status": "shipped" if r.returncode == 0 else "ship failed",
                                 "test_accuracy": rec["test_accuracy"], "wall_time_s": rec["wall_time_s"]}
            else:
                tail = (runs / name / "train.log").read_text()[-300:]
                print(f"[{time.time() - t0:6.0f}s] {name} ended without finishing (exit {proc.returncode}): {tail}",
                      flush=True)
                results[name] = {"status": "unfinished", "exit": proc.returncode}
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
