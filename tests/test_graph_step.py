"""The captured training step, run on the CPU: a stand-in capture replays the recorded function eagerly, so all
but the CUDA graph itself (static buffers, device lr, warm-up put back, device sums, fallback) is checked here."""
from __future__ import annotations

import copy
import unittest.mock as mock

import pytest
import torch

from resnet_demo import graph_step
from resnet_demo.graph_step import EagerStep, GraphStep, StepSpec, make_step, resolve_step, sgd_update
from resnet_demo.model import build_model

CPU = torch.device("cpu")


def eager_replay(fn):
    """A stand-in for torch.cuda.graph on the CPU: 'replaying' runs the recorded step again."""
    return fn


def _setup(nesterov=True, seed=0):
    torch.manual_seed(seed)
    model = build_model(8).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=5e-4)
    spec = StepSpec(momentum=0.9, nesterov=nesterov, weight_decay=5e-4, label_smoothing=0.1, amp_dtype=None)
    return model, opt, spec, torch.zeros(3, dtype=torch.float64)


def _batches(n, batch=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last),
             torch.randint(0, 10, (batch,), generator=g)) for _ in range(n)]


def _state(model, opt, sums):
    mom = [opt.state[p].get("momentum_buffer") for p in model.parameters()]
    return ([t.clone() for t in model.state_dict().values()], [None if m is None else m.clone() for m in mom],
            sums.clone())


def _same(a, b) -> bool:
    eq = lambda u, v: (u is None and v is None) or (u is not None and v is not None and torch.equal(u, v))  # noqa: E731
    return all(eq(u, v) for u, v in zip(a[0], b[0])) and all(eq(u, v) for u, v in zip(a[1], b[1])) and torch.equal(a[2], b[2])


def test_sgd_update_matches_torch_sgd():
    for nesterov in (True, False):
        torch.manual_seed(0)
        params = [torch.randn(5, 3), torch.randn(7)]
        mine = [p.clone() for p in params]
        opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=1e-3)
        bufs = [torch.zeros_like(p) for p in mine]
        for k in range(4):
            grads = [torch.randn_like(p) for p in params]
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
            sgd_update(mine, [g.clone() for g in grads], bufs, torch.tensor(0.05), 0.9, nesterov, 1e-3)
            assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(params, mine)), (nesterov, k)


def test_capture_leaves_model_and_optimizer_as_they_were():
    model, opt, spec, sums = _setup()
    weights, momentum, sums_before = _state(model, opt, sums)
    step = GraphStep(model, opt, spec, 16, CPU, sums, capture=eager_replay)  # 3 warm-up steps and a check replay
    weights_after, momentum_after, sums_after = _state(model, opt, sums)
    assert all(torch.equal(a, b) for a, b in zip(weights, weights_after))  # weights and BN statistics
    assert torch.equal(sums_before, sums_after)
    # a fresh run had no momentum; the step made zero buffers, which SGD's first step treats as none
    assert all(m is None for m in momentum) and all(torch.count_nonzero(m) == 0 for m in momentum_after)
    assert step.path == "cuda-graph" and step.fallback is None


def test_captured_step_trains_as_the_eager_one():
    batches = _batches(6)
    model, opt, spec, sums = _setup()
    model2, sums2 = copy.deepcopy(model), sums.clone()
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    eager = EagerStep(model, opt, spec, CPU, sums)
    graph = GraphStep(model2, opt2, spec, 16, CPU, sums2, capture=eager_replay)
    for k, (x, y) in enumerate(batches):
        lr = 0.1 * (k + 1) / 6
        le, ce = eager(x, y, lr)
        lg, cg = graph(x, y, lr)
        assert torch.allclose(le, lg, rtol=1e-4) and int(ce) == int(cg)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5)
    assert torch.allclose(sums, sums2) and sums[2] == 6 * 16
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.allclose(opt.state[p]["momentum_buffer"], opt2.state[q]["momentum_buffer"], rtol=1e-4, atol=1e-6)


def test_a_failed_capture_falls_back_to_eager_and_says_why():
    model, opt, spec, sums = _setup()
    before = _state(model, opt, sums)

    def broken(fn):
        fn()  # gets as far as running the step once, as a capture would
        raise RuntimeError("operation not permitted when stream is capturing")

    with mock.patch.object(graph_step, "resolve_step", return_value=("graph", None)):  # as if on a GPU
        step = make_step("graph", model, model, opt, spec, 16, CPU, 1, False, sums, capture=broken)
    assert isinstance(step, EagerStep) and step.path == "eager"
    assert "capture failed" in step.fallback and "stream is capturing" in step.fallback
    assert _same(before, _state(model, opt, sums))  # nothing the warm-up or the failed capture did is left
    assert all(p.grad is None for p in model.parameters())
    x, y = _batches(1)[0]
    step(x, y, 0.1)  # and the eager step trains
    assert sums[2] == 16


@pytest.mark.parametrize("requested,device,world,compiled,expected", [
    ("auto", "cpu", 1, False, ("eager", None)),
    ("eager", "cuda", 1, False, ("eager", None)),
    ("auto", "cuda", 1, False, ("graph", None)),
    ("graph", "cpu", 1, False, ("eager", "a CUDA graph needs a CUDA device")),
    ("auto", "cuda", 2, False, ("eager", "under DDP the gradient all-reduce runs outside a capturable step")),
    ("auto", "cuda", 1, True, ("eager", "the model is compiled (--compile)")),
])
def test_which_step_runs(requested, device, world, compiled, expected):
    assert resolve_step(requested, torch.device(device), world, compiled) == expected


def test_an_unknown_step_is_refused():
    with pytest.raises(ValueError, match="unknown step 'fast'; choose one of auto, eager, graph"):
        resolve_step("fast", CPU, 1, False)


def test_a_batch_of_another_shape_is_refused():
    model, opt, spec, sums = _setup()
    step = GraphStep(model, opt, spec, 16, CPU, sums, capture=eager_replay)
    with pytest.raises(ValueError, match=r"batches of \(16, 3, 32, 32\)"):
        step(torch.zeros(8, 3, 32, 32), torch.zeros(8, dtype=torch.long), 0.1)
