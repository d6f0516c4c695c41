"""Train several models at once on one machine (e.g. a large GPU), then ship each finished one.

Small CIFAR ResNets leave a big GPU mostly idle, so several trainings run side by side as separate processes
(`--parallel`). A time budget stops whatever is still running with SIGTERM, which makes the trainer save a
resumable checkpoint; run the same command again with --resume to continue. Everything it writes goes under
--out, so a device run can bring it back in one archive:

    python scripts/train_all.py --data-dir D --out $OUT/work --models resnet20,plain20 --preset fast \
        --parallel 4 --budget-s 520 --fp16
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", required=True, help="comma-separated: resnet20,resnet56,plain20,...")
    p.add_argument("--preset", default="fast")
    p.add_argument("--epochs", type=int)
    p.add_argument("--subset", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True, help="runs go to OUT/runs/<model>, shipped files to OUT/weights")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--budget-s", type=float, default=1e9, help="SIGTERM what still runs after this many seconds")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--fp16", action="store_true", help="ship float16 weights")
    p.add_argument("--extra", default="", help="extra arguments for every `train`, e.g. '--compile'")
    args = p.parse_args()

    out = Path(args.out)
    runs, weights = out / "runs", out / "weights"
    runs.mkdir(parents=True, exist_ok=True)
    queue = [m for m in args.models.split(",") if m]
    running: dict[str, subprocess.Popen] = {}
    results: dict[str, dict] = {}
    t0 = time.time()
    env = {**os.environ, "RESNET_DEMO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    while queue or running:
        while queue and len(running) < args.parallel and time.time() - t0 < args.budget_s:
            name = queue.pop(0)
            run_dir = runs / name
            cmd = [sys.executable, "-m", "resnet_demo", "train", *parse_model(name), "--preset", args.preset,
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
                    print(f"[{time.time() - t0:6.0f}s] budget spent: stopping {name} (it saves a checkpoint)", flush=True)
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
                results[name] = {"status": "shipped" if r.returncode == 0 else "ship failed", "test_accuracy": rec["test_accuracy"],
                                 "wall_time_s": rec["wall_time_s"]}
            else:
                tail = (runs / name / "train.log").read_text()[-300:]
                print(f"[{time.time() - t0:6.0f}s] {name} ended without finishing (exit {proc.returncode}): {tail}", flush=True)
                results[name] = {"status": "unfinished", "exit": proc.returncode}
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
