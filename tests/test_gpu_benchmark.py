"""`python -m benchmarks.gpu --quick` runs anywhere (here: the CPU) and writes the record the GPU run writes: every
figure under its stable id, printed as measured, the JSON rewritten after each one, so a run cut off between
parts leaves a valid file of the parts it finished."""
from __future__ import annotations

import json

import pytest

from benchmarks import gpu
from benchmarks.common import SCHEMA

IDS = ["throughput.r8.baseline", "throughput.r8.eager", "throughput.r8", "ratio.r8", "ratio.r8.eager", "tta.r8"]


def _record(tmp_path) -> dict:
    (path,) = tmp_path.glob("results-cpu-quick-*.json")
    assert not list(tmp_path.glob(".*.tmp")), "a half-written JSON was left behind"
    return json.loads(path.read_text())


def test_quick_mode_measures_and_records_every_part(tmp_path, capsys):
    assert gpu.main(["--quick", "--out", str(tmp_path)]) == 0
    r = _record(tmp_path)
    assert r["schema"] == SCHEMA and r["tool"] == "benchmarks.gpu" and r["quick"]
    assert r["device"] and r["torch"] and r["step_path"] == "eager"  # no CUDA graph on a CPU
    assert r["parts"] == {"throughput": "done", "host_syncs": "done", "time_to_table6": "done"}
    assert r["preset"] == "table6" and r["eval_every"] == 0 and r["data"] == "tiny synthetic stand-in (--quick)"
    rows = {row["id"]: row for row in r["rows"]}
    assert list(rows) == IDS
    for name in ("throughput.r8.baseline", "throughput.r8.eager", "throughput.r8"):
        assert rows[name]["value"] > 0 and rows[name]["unit"] == "img/s", rows[name]
    assert rows["throughput.r8"]["extra"]["step_path"] == "eager" and rows["throughput.r8"]["extra"]["eval_every"] == 0
    assert rows["ratio.r8"]["value"] == pytest.approx(rows["throughput.r8"]["value"]  # to two decimals
                                                      / rows["throughput.r8.baseline"]["value"], abs=0.0051)
    assert r["host_syncs"] == {"skipped": "needs a CUDA device"}
    tta = rows["tta.r8"]
    (detail,) = r["time_to_table6"]
    assert detail["status"] == "completed" and detail["epochs"] == 2 and len(detail["history"]) == 2
    assert [h["test_acc"] for h in detail["history"]] == [None, None]  # no per-epoch test curve
    assert detail["reached_at"] == "the final evaluation" and detail["reached_acc"] == detail["final_test_accuracy"]
    assert tta["unit"] == "s" and 0 < tta["value"] <= detail["wall_s"]
    out = capsys.readouterr().out
    for name in IDS:  # each figure printed as it was measured, before the summary
        assert out.index(f"{name} = ") < out.index("host syncs in the captured step"), name
    assert f"wrote {tmp_path}" in out


class Killed(BaseException):
    """Stands for SIGKILL between two parts: nothing in the script catches it."""


def test_a_run_cut_off_between_parts_leaves_a_valid_json_of_what_it_measured(tmp_path, monkeypatch, capsys):
    # the measurements are stand-ins (this checks the record, not the training): 1000 img/s and more for ours
    monkeypatch.setattr(gpu, "baseline_throughput", lambda *a, **k: (1000.0, {"batch_size": 128}))
    monkeypatch.setattr(gpu, "ours_throughput", lambda *a, step, **k: (
        {"eager": 2000.0, "auto": 5000.0}[step], {"batch_size": 256, "step_fallback": None,
                                                  "step_path": {"eager": "eager", "auto": "cuda-graph"}[step]}))

    def killed(*a, **k):
        raise Killed

    monkeypatch.setattr(gpu, "time_to_table6", killed)
    with pytest.raises(Killed):
        gpu.main(["--quick", "--out", str(tmp_path)])
    r = _record(tmp_path)
    assert r["parts"] == {"throughput": "done", "host_syncs": "done", "time_to_table6": "pending"}
    rows = {row["id"]: row["value"] for row in r["rows"]}
    assert rows == {"throughput.r8.baseline": 1000, "throughput.r8.eager": 2000, "throughput.r8": 5000,
                    "ratio.r8": 5.0, "ratio.r8.eager": 2.0}
    assert r["step_path"] == "cuda-graph" and "total_s" not in r  # the default step's, not the eager variant's
    out = capsys.readouterr().out
    assert "throughput.r8 = 5,000 img/s [cuda-graph]" in out and "throughput.r8.eager = 2,000 img/s [eager]" in out
    assert "ratio.r8 = 5 x" in out
