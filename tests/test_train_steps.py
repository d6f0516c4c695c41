"""train() with each step path on the CPU: which one ran is recorded, a failed capture falls back to the eager
step without a trace, and a run on the captured step (a stand-in capture that replays eagerly) resumes bit for bit.
"""
from __future__ import annotations

import json

import pytest
import torch

from resnet_demo.store.events import epochs as epoch_rows
from resnet_demo.store.events import read_events
from resnet_demo.training import graph_step
from resnet_demo.training import train as train_mod
from resnet_demo.training.config import TrainConfig
from resnet_demo.training.train import train

TINY = dict(depth=8, preset="classroom", epochs=2, batch_size=64, device="cpu", download=False)  # as tiny_run's


def cfg(data_dir, out, **kw) -> TrainConfig:
    return TrainConfig(**{**TINY, "data_dir": str(data_dir), "out": str(out), **kw})


def weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def record(out) -> tuple[dict, dict]:
    starts = [e for e in read_events(out / "events.jsonl") if e["type"] == "start"]
    return starts[-1], json.loads((out / "metrics.json").read_text())


def as_if_on_a_gpu(monkeypatch):
    """The graph path chosen as on a GPU, captured by a stand-in that replays the step eagerly."""
    monkeypatch.setattr(graph_step, "resolve_step", lambda *a: ("graph", None))
    monkeypatch.setattr(graph_step, "cuda_capture", lambda device: (lambda fn: fn))


def test_the_cpu_runs_the_eager_step_and_says_so(tiny_run):
    start, metrics = record(tiny_run)
    assert (start["step_path"], start["step_fallback"]) == ("eager", None)
    assert (metrics["step_path"], metrics["step_fallback"]) == ("eager", None)


def test_a_graph_asked_for_on_the_cpu_falls_back_and_says_why(tiny_run, synthetic_data_dir, tmp_path):
    out = tmp_path / "r"
    train(cfg(synthetic_data_dir, out, step="graph"))
    start, metrics = record(out)
    assert metrics["step_path"] == "eager" and metrics["step_fallback"] == "a CUDA graph needs a CUDA device"
    assert start["step_fallback"] == metrics["step_fallback"]
    a, b = weights(tiny_run), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_failed_capture_trains_exactly_as_the_eager_step(tiny_run, synthetic_data_dir, tmp_path, monkeypatch):
    def broken(device):
        def capture(fn):
            fn()
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return capture

    monkeypatch.setattr(graph_step, "resolve_step", lambda *a: ("graph", None))
    monkeypatch.setattr(graph_step, "cuda_capture", broken)
    out = tmp_path / "r"
    train(cfg(synthetic_data_dir, out))
    _, metrics = record(out)
    assert metrics["step_path"] == "eager"
    assert metrics["step_fallback"].startswith("CUDA graph capture failed (RuntimeError: CUDA error: operation")
    # the warm-up and the failed capture were put back: the run is the plain eager run, bit for bit
    a, b = weights(tiny_run), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_captured_step_trains_reports_and_resumes_bit_for_bit(synthetic_data_dir, tmp_path, monkeypatch):
    as_if_on_a_gpu(monkeypatch)
    whole = tmp_path / "whole"
    train(cfg(synthetic_data_dir, whole, precision="fp32"))  # fp32: bf16 would blur the comparison below
    start, metrics = record(whole)
    assert (start["step_path"], metrics["step_path"], metrics["step_fallback"]) == ("cuda-graph", "cuda-graph", None)
    rows = epoch_rows(read_events(whole / "events.jsonl"))
    assert [r["epoch"] for r in rows] == [1, 2] and all(0 < r["train_loss"] < 5 for r in rows)
    steps = [e for e in read_events(whole / "events.jsonl") if e["type"] == "step"]
    assert steps and all(0 <= e["acc"] <= 1 and e["loss"] > 0 for e in steps)
    # the same training as the eager step, to float rounding (the update is written with foreach ops; the
    # rounding differences grow from step to step, to about 1e-3 of the BN statistics after these 20 steps)
    monkeypatch.undo()
    eager = tmp_path / "eager"
    train(cfg(synthetic_data_dir, eager, precision="fp32"))
    assert record(eager)[1]["step_path"] == "eager"
    eager_rows = epoch_rows(read_events(eager / "events.jsonl"))
    for r, e in zip(rows, eager_rows):
        assert r["train_loss"] == pytest.approx(e["train_loss"], rel=1e-4) and r["test_acc"] == e["test_acc"]
    a, b = weights(eager), weights(whole)
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-2, atol=1e-2) for k in a)
    as_if_on_a_gpu(monkeypatch)

    parted = tmp_path / "parted"
    calls = {"n": 0}

    def stop_mid_epoch_2() -> bool:
        calls["n"] += 1
        return calls["n"] >= 15

    assert train(cfg(synthetic_data_dir, parted, precision="fp32"), should_stop=stop_mid_epoch_2)["status"] == "stopped"
    train(cfg(synthetic_data_dir, parted, precision="fp32", resume=True))
    a, b = weights(whole), weights(parted)
    assert all(torch.equal(a[k], b[k]) for k in a), "a resumed run on the captured step differs"
    keys = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc")
    assert [{k: r[k] for k in keys} for r in epoch_rows(read_events(parted / "events.jsonl"))] == \
        [{k: r[k] for k in keys} for r in rows]
    assert record(parted)[1]["step_path"] == "cuda-graph"


def test_the_record_names_each_path_a_resumed_run_took(tmp_path):
    (tmp_path / "events.jsonl").write_text("".join(
        json.dumps({"type": "start", "step_path": p, "resumed_from_step": s}) + "\n"
        for p, s in (("cuda-graph", None), ("eager", 40), ("eager", 80), ("cuda-graph", 120))))
    assert train_mod.across_run(tmp_path, lambda e: e.get("step_path")) == "cuda-graph then eager then cuda-graph"


def test_compile_on_a_gpu_trains_the_compiled_model_inside_the_graph(synthetic_data_dir, tmp_path, monkeypatch):
    """--compile on CUDA (once refused) puts the compiled model inside the captured step; dynamo's eager backend
    stands in for inductor, and the stand-in capture for CUDA's."""
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend="eager"))
    as_if_on_a_gpu(monkeypatch)
    out = tmp_path / "r"
    train(cfg(synthetic_data_dir, out, compile=True, precision="fp32"))
    start, metrics = record(out)
    assert start["step_path"] == metrics["step_path"] == "compiled-cuda-graph" and metrics["step_fallback"] is None
    rows = epoch_rows(read_events(out / "events.jsonl"))
    assert [r["epoch"] for r in rows] == [1, 2] and all(0 < r["train_loss"] < 5 for r in rows)
