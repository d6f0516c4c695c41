"""scripts/train_all.py's plan: the seven shipped models, each with its preset's epochs for its depth, longest
first, and whether the whole queue fits one 10-minute GPU call at the throughput it states."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from resnet_demo.training.recipes import get_recipe

ROOT = Path(__file__).resolve().parent.parent


def plan(tmp_path, *extra) -> list[str]:
    proc = subprocess.run([sys.executable, "scripts/train_all.py", "--data-dir", str(tmp_path), "--out",
                           str(tmp_path / "out"), "--plan", *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "out").exists()  # a plan trains and writes nothing
    return proc.stdout.splitlines()


def test_the_default_plan_retrains_the_seven_shipped_models_longest_first_within_one_gpu_call(tmp_path):
    lines = plan(tmp_path)
    assert "ResNet-20 trains at 200,000 images/s" in lines[0] and "not a measurement" in lines[0]  # the assumption
    models = lines[1:8]
    assert [ln.split(":")[0] for ln in models] == ["resnet110", "resnet56", "resnet44", "resnet32", "plain56",
                                                   "resnet20", "plain20"]
    for ln in models:
        depth = int(re.match(r"[a-z]+(\d+)", ln).group(1))
        preset = "fast" if ln.startswith("plain") else "table6"
        assert f": {preset} preset, {get_recipe(preset).epochs_for(depth)} epochs" in ln, ln  # read from the presets
    assert "3 at a time" in lines[8] and "of the 540 s budget: fits" in lines[8] and "not a measurement" in lines[8]
    done = float(re.search(r"all done in about (\d+) s", lines[8]).group(1))
    assert done <= 540


def test_a_slower_gpu_or_one_lane_is_said_not_to_fit(tmp_path):
    lines = plan(tmp_path, "--assume-images-per-s", "50000", "--parallel", "1")
    assert "ResNet-20 trains at 50,000 images/s" in lines[0]
    assert "1 at a time" in lines[-1] and "does NOT fit" in lines[-1] and "run the same command again" in lines[-1]
    # without the per-epoch test curve the same queue is less work
    with_eval = float(re.search(r"(\d+) s of GPU work", lines[-1]).group(1))
    without = float(re.search(r"(\d+) s of GPU work", plan(tmp_path, "--assume-images-per-s", "50000",
                                                                  "--eval-every", "0")[-1]).group(1))
    assert without < with_eval
