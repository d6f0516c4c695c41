"""`python -m benchmarks.gpu --quick` runs anywhere (here: the CPU) and writes the record the GPU run writes."""
from __future__ import annotations

import json

from benchmarks import gpu


def test_quick_mode_measures_and_records_every_part(tmp_path, capsys):
    assert gpu.main(["--quick", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("results-cpu-quick-*.json")
    r = json.loads(path.read_text())
    assert r["quick"] and r["preset"] == "table6" and r["data"] == "tiny synthetic stand-in (--quick)"
    assert r["environment"]["torch"] and r["environment"]["device"]
    (row,) = r["throughput"]
    assert row["depth"] == 8
    for name in ("baseline", "eager", "fast"):
        assert row[name]["images_per_s"] > 0, row[name]
    assert row["eager"]["step_path"] == "eager" and row["fast"]["step_path"] == "eager"  # no CUDA graph on a CPU
    assert row["fast_vs_baseline"] > 0
    assert r["host_syncs"] == {"skipped": "needs a CUDA device"}
    (tta,) = r["time_to_table6"]
    assert tta["status"] == "completed" and tta["epochs"] == 2 and len(tta["history"]) == 2
    assert [h["epoch"] for h in tta["history"]] == [1, 2] and all(0 <= h["test_acc"] <= 1 for h in tta["history"])
    assert tta["reached_epoch"] is not None and 0 < tta["reached_s"] <= tta["wall_s"]
    assert tta["step_path"] == "eager"
    out = capsys.readouterr().out
    assert "ResNet-8: baseline" in out and "to 15.00%" in out and f"wrote {path}" in out
