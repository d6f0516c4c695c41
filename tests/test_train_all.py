"""scripts/train_all.py's plan: the seven shipped models, each with its preset, longest first."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_default_plan_retrains_the_seven_shipped_models_longest_first(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/train_all.py", "--data-dir", str(tmp_path), "--out",
                           str(tmp_path / "out"), "--plan"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    plan = [ln.split(":")[0] for ln in lines[:7]]
    assert plan == ["resnet110", "resnet56", "resnet44", "resnet32", "plain56", "resnet20", "plain20"]
    assert all("table6 preset" in ln for ln in lines[:7] if ln.startswith("resnet"))
    assert all("fast preset" in ln for ln in lines[:7] if ln.startswith("plain"))
    assert "an estimate, not a measurement" in lines[7]
    assert not (tmp_path / "out").exists()  # a plan trains and writes nothing
