"""`python -m benchmarks.gpu --quick` runs anywhere (here: the CPU) and writes the record the GPU run writes: every
figure under its stable id, printed as measured, the JSON rewritten after each one, so a run cut off between
parts leaves a valid file of the parts it finished."""
from __future__ import annotations

import json

import pytest

from benchmarks import gpu
from benchmarks.common import SCHEMA

IDS = ["throughput.r8.baseline", "throughput.r8.eager", "throughput.r8", "ratio.r8", "ratio.r8.eager", "tta.r8",
       "throughput.r8.compiled"]


def _record(tmp_path) -> dict:
    (path,) = tmp_path.glob("results-cpu-quick-*.json")
    assert not list(tmp_path.glob(".*.tmp")), "a half-written JSON was left behind"
    return json.loads(path.read_text())


def test_quick_mode_measures_and_records_every_part(tmp_path, capsys):
    assert gpu.main(["--quick", "--out", str(tmp_path)]) == 0
    r = _record(tmp_path)
    assert r["schema"] == SCHEMA and r["tool"] == "benchmarks.gpu" and r["quick"]
    assert r["device"] and r["torch"] and r["step_path"] == "eager"  # no CUDA graph on a CPU
    assert r["parts"] == {"throughput": "done", "host_syncs": "done", "time_to_table6": "done", "compiled": "done"}
    assert r["preset"] == "table6" and r["eval_every"] == 0 and r["data"] == "tiny synthetic stand-in (--quick)"
    rows = {row["id"]: row for row in r["rows"]}
    assert list(rows) == IDS
    for name in ("throughput.r8.baseline", "throughput.r8.eager", "throughput.r8"):
        assert rows[name]["value"] > 0 and rows[name]["unit"] == "img/s", rows[name]
    assert rows["throughput.r8"]["extra"]["step_path"] == "eager" and rows["throughput.r8"]["extra"]["eval_every"] == 0
    assert rows["ratio.r8"]["value"] == pytest.approx(rows["throughput.r8"]["value"]  # to two decimals
                                                      / rows["throughput.r8.baseline"]["value"], abs=0.0051)
    assert r["host_syncs"] == {"skipped": "needs a CUDA device"}
    assert rows["throughput.r8.compiled"]["value"] is None  # a CPU has no captured step to compile into
    assert rows["throughput.r8.compiled"]["notes"].startswith("skipped: needs a CUDA device")
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
    assert r["parts"] == {"throughput": "done", "host_syncs": "done", "time_to_table6": "pending",
                          "compiled": "pending"}
    rows = {row["id"]: row["value"] for row in r["rows"]}
    assert rows == {"throughput.r8.baseline": 1000, "throughput.r8.eager": 2000, "throughput.r8": 5000,
                    "ratio.r8": 5.0, "ratio.r8.eager": 2.0}
    assert r["step_path"] == "cuda-graph" and "total_s" not in r  # the default step's, not the eager variant's
    out = capsys.readouterr().out
    assert "throughput.r8 = 5,000 img/s [cuda-graph]" in out and "throughput.r8.eager = 2,000 img/s [eager]" in out
    assert "ratio.r8 = 5 x" in out


def test_parts_runs_only_those_into_a_file_of_its_own(tmp_path, monkeypatch, capsys):
    """A second call can finish what a first one's budget left, without overwriting the first one's file."""
    (tmp_path / "results-cpu-quick-keep.json").write_text("{}")
    monkeypatch.setattr(gpu, "time_to_table6", lambda *a, **k: pytest.fail("time_to_table6 was not asked for"))
    assert gpu.main(["--quick", "--parts", "host_syncs,compiled", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("results-cpu-quick-*-host_syncs-compiled.json")
    r = json.loads(path.read_text())
    assert r["parts"] == {"throughput": "not asked for", "host_syncs": "done", "time_to_table6": "not asked for",
                          "compiled": "done"}
    assert [row["id"] for row in r["rows"]] == ["throughput.r8.compiled"]
    assert "not done" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        gpu.main(["--quick", "--parts", "throughput,speed", "--out", str(tmp_path)])


def test_the_compiled_figure_is_set_against_the_default_step(monkeypatch):
    """On a GPU (stand-ins here): --compile inside the captured step, and its ratio to throughput.r20."""
    import torch

    from benchmarks.common import Report, Row

    seen = {}

    def ours(*a, step, compile=False, **k):
        seen.update(step=step, compile=compile)
        return 6000.0, {"batch_size": 256, "step_path": "compiled-cuda-graph", "step_fallback": None}

    monkeypatch.setattr(gpu, "ours_throughput", ours)
    report = Report(None, "benchmarks.gpu", [], False, "stand-in")
    report.add(Row("throughput.r20", "default step", 5000.0, "img/s", extra={"step_path": "cuda-graph"}))
    gpu.compiled(None, 20, torch.device("cuda"), float("inf"), lambda m: None, report)
    row = report.record["rows"][-1]
    assert seen == {"step": "auto", "compile": True}
    assert (row["id"], row["value"], row["extra"]["vs_default_step"]) == ("throughput.r20.compiled", 6000, 1.2)
    assert row["notes"] == "batch 256, 1.2x the default step" and report.record["step_path"] == "cuda-graph"
