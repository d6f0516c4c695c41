"""What git tracks stays lean: no data cache, run folder or checkpoint, and weights/ within its budget.

A run folder or a data link committed by mistake is also a hazard: checking it out over an ignored local folder
of the same name replaces that folder."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_BUDGET_BYTES = 30_000_000


def _tracked() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing is tracked to check")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.split("\0") if p]


def test_no_cache_run_folder_or_checkpoint_is_tracked():
    local = {".cache", "runs", "data", "test-artifacts", ".venv", ".gpu-data"}  # .gitignore's folders
    bad = [p for p in _tracked()
           if p.split("/")[0] in local or Path(p).name.startswith("checkpoint.") and not p.endswith(".py")]
    assert bad == []


def test_tracked_weights_fit_their_budget():
    size = sum((ROOT / p).stat().st_size for p in _tracked() if p.startswith("weights/") and (ROOT / p).is_file())
    assert size <= WEIGHTS_BUDGET_BYTES, f"weights/ holds {size / 1e6:.1f} MB, over its 30 MB budget"
