"""The per-epoch costs of a checkpoint: one fused finiteness check, one copy of the state, the file written and
fsynced off the training thread (its failure still the run's failure), momentum restored in its weight's
layout, and a resume after all that still bit for bit."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from resnet_demo.base import storage
from resnet_demo.base.storage import StorageError
from resnet_demo.nets.model import build_model
from resnet_demo.store.events import read_events
from resnet_demo.store.weights import safetensors_bytes, state_tensors
from resnet_demo.training import checkpoint as ckpt
from resnet_demo.training.config import TrainConfig
from resnet_demo.training.train import TrainingError, train, weights_magnitude

TINY = dict(depth=8, preset="classroom", epochs=2, batch_size=64, device="cpu", download=False)  # as tiny_run's


def cfg(data_dir, out, **kw) -> TrainConfig:
    return TrainConfig(**{**TINY, "data_dir": str(data_dir), "out": str(out), **kw})


def trained(seed: int = 0):
    """A channels-last ResNet-8 and its Nesterov SGD after two steps: every momentum buffer set."""
    torch.manual_seed(seed)
    model = build_model(8).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for _ in range(2):
        x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
        opt.step()
        opt.zero_grad()
    return model, opt


STATE = {"epoch": 1, "batch": 0, "step": 2, "config": {"depth": 8}}


# ---------------------------------------------------------------- the finiteness check


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_the_fused_check_catches_a_bad_value_in_any_one_parameter(bad, monkeypatch):
    model, _ = trained()
    params = list(model.parameters())
    reads = {"n": 0}
    real_item = torch.Tensor.item

    def counted_item(self):
        reads["n"] += 1
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counted_item)
    good = weights_magnitude(params)
    assert reads["n"] == 1, "the check reads the device once, not once per tensor"
    assert good == pytest.approx(sum(float(p.detach().abs().sum()) for p in params), rel=1e-5)
    for i, p in enumerate(params):
        last = (-1,) * p.dim()
        with torch.no_grad():
            kept = p[last].clone()
            p[last] = bad
            value = weights_magnitude(params)
            p[last] = kept
        assert value != value or value == float("inf"), f"parameter {i} ({tuple(p.shape)}) was not caught"


# ---------------------------------------------------------------- the snapshot and the file


def test_a_snapshot_writes_the_bytes_a_tensor_by_tensor_save_wrote(tmp_path):
    model, opt = trained()
    reference = {f"model.{k}": v for k, v in state_tensors(model).items()}
    for i, p in enumerate(model.parameters()):
        reference[f"momentum.{i}"] = opt.state[p]["momentum_buffer"].to("cpu").contiguous()
    meta = {"format": ckpt.FORMAT, "state": __import__("json").dumps(STATE)}
    ckpt.save_checkpoint(tmp_path / "c.safetensors", model, opt, STATE)
    assert (tmp_path / "c.safetensors").read_bytes() == safetensors_bytes(reference, meta)


def test_a_snapshot_is_a_copy_taken_when_it_is_made(tmp_path):
    model, opt = trained()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = dict(STATE)
    snap = ckpt.snapshot(model, opt, state)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # training goes on while the file is written
    state["step"] = 99
    ckpt.write_snapshot(tmp_path / "c.safetensors", snap)
    fresh = build_model(8)
    loaded = ckpt.load_checkpoint(tmp_path / "c.safetensors", fresh,
                                  torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9))
    assert loaded["step"] == 2
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in before.items())
    assert {dtype for dtype in snap.flat} == {torch.float32, torch.int64}  # one host copy per dtype


def test_momentum_is_restored_in_its_weights_layout(tmp_path):
    model, opt = trained()
    assert any(p.dim() == 4 and not p.is_contiguous() for p in model.parameters())  # channels_last convolutions
    ckpt.save_checkpoint(tmp_path / "c.safetensors", model, opt, STATE)
    torch.manual_seed(1)
    fresh = build_model(8).to(memory_format=torch.channels_last)
    opt2 = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    ckpt.load_checkpoint(tmp_path / "c.safetensors", fresh, opt2)
    for (name, p), q in zip(fresh.named_parameters(), model.parameters(), strict=True):
        buf = opt2.state[p]["momentum_buffer"]
        assert buf.stride() == p.stride(), f"{name}: momentum strides {buf.stride()}, weight {p.stride()}"
        assert buf.dtype == p.dtype and torch.equal(buf, opt.state[q]["momentum_buffer"])
        assert torch.equal(p, q)


# ---------------------------------------------------------------- the background writer


def test_the_writer_hands_back_a_write_and_its_error(tmp_path, monkeypatch):
    model, opt = trained()
    writer = ckpt.CheckpointWriter()
    writer.submit(tmp_path / "c.safetensors", ckpt.snapshot(model, opt, STATE), "first")
    assert writer.wait() == "first" and not writer.busy and (tmp_path / "c.safetensors").is_file()
    assert writer.wait() is None and writer.poll() is None  # nothing in flight

    def full_disk(path, snap):
        raise StorageError(28, f"could not save {path}: the disk is full; the previous file there is unchanged")

    monkeypatch.setattr(ckpt, "write_snapshot", full_disk)
    writer.submit(tmp_path / "c.safetensors", ckpt.snapshot(model, opt, STATE), "second")
    with pytest.raises(StorageError, match="disk is full"):
        writer.wait()
    assert not writer.busy and writer.wait() is None  # the error is handed over once


def test_a_failed_background_write_is_the_runs_failure(synthetic_data_dir, tmp_path, monkeypatch):
    out = tmp_path / "r"
    real_write, writes = ckpt.write_snapshot, {"n": 0}

    def second_write_fails(path, snap):  # epoch 1's checkpoint is written, epoch 2's finds the disk full
        writes["n"] += 1
        if writes["n"] == 2:
            raise StorageError(28, f"could not save {path}: the disk is full; the previous file there is unchanged")
        real_write(path, snap)

    monkeypatch.setattr(ckpt, "write_snapshot", second_write_fails)
    with pytest.raises(TrainingError, match="disk is full.*unchanged"):
        train(cfg(synthetic_data_dir, out))
    assert ckpt.read_state(out / ckpt.FILENAME)["step"] == 10  # the last good checkpoint is kept
    events = read_events(out / "events.jsonl")
    assert [(e["epoch"], e["step"]) for e in events if e["type"] == "checkpoint"] == [(1, 10)]  # only what is on disk
    assert events[-1]["status"] == "failed" and "disk is full" in events[-1]["message"]
    assert not (out / "metrics.json").exists() and not (out / "model.safetensors").exists()  # not a finished run


def test_the_training_thread_does_not_wait_for_fsync_and_a_resume_stays_bit_for_bit(tiny_run, synthetic_data_dir,
                                                                                      tmp_path, monkeypatch):
    # The checkpoint writer's fsync of epoch 1's checkpoint is held until training has gone on to step 12: were
    # the fsync on the training thread (or waited for by it), step 12 would never come and the fsync would time
    # out.
    out = tmp_path / "r"
    released, held = threading.Event(), []
    real_fsync = storage.os.fsync

    def slow_fsync(fd):
        if threading.current_thread() is not threading.main_thread():  # the checkpoint writer's
            t = time.perf_counter()
            held.append(released.wait(timeout=120) and time.perf_counter() - t)
        return real_fsync(fd)

    calls = {"n": 0}

    def go_on_then_stop() -> bool:  # asked before every step and once at an epoch's end
        calls["n"] += 1
        if calls["n"] == 13:  # before step 12: epoch 1's checkpoint (step 10) is still in its fsync
            released.set()
        return calls["n"] >= 15  # before step 14: 13 steps done

    monkeypatch.setattr(storage.os, "fsync", slow_fsync)
    stopped = train(cfg(synthetic_data_dir, out), should_stop=go_on_then_stop)
    assert stopped["status"] == "stopped" and stopped["step"] == 13
    assert held and held[0] is not False, "the training thread waited for the checkpoint's fsync"
    assert ckpt.read_state(out / ckpt.FILENAME)["step"] == 13  # the stop waited for its own checkpoint
    monkeypatch.undo()
    resumed = train(cfg(synthetic_data_dir, out, resume=True))
    assert resumed["steps"] == 20
    from safetensors.torch import load_file

    a, b = load_file(str(tiny_run / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a), "a resume from background-written checkpoints differs"
