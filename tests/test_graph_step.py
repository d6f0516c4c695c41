"""The captured training step, run on the CPU: a stand-in capture replays the recorded function eagerly, so all
but the CUDA graph itself (static buffers, device lr, the warm-up put back, the fallback) is checked here."""
from __future__ import annotations

import contextlib
import copy
import unittest.mock as mock

import pytest
import torch

from resnet_demo.nets.model import build_model
from resnet_demo.training import graph_step
from resnet_demo.training.graph_step import GraphStep, make_step, resolve_step, sgd_update
from resnet_demo.training.recipes import get_recipe
from resnet_demo.training.train import EagerStep

CPU = torch.device("cpu")
RECIPE = get_recipe("fast")  # Nesterov, wd 5e-4, label smoothing 0.1


def eager_replay(fn):
    """A stand-in for torch.cuda.graph on the CPU: 'replaying' runs the recorded step again."""
    return fn


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=RECIPE.momentum, nesterov=RECIPE.nesterov,
                           weight_decay=RECIPE.weight_decay)


def _setup(seed=0):
    torch.manual_seed(seed)
    model = build_model(8).to(memory_format=torch.channels_last)
    return model, _sgd(model)


def _twin(model):
    """An independent copy of the model, with its own optimizer."""
    twin = copy.deepcopy(model)
    return twin, _sgd(twin)


def _assert_trains_alike(eager, step, model, twin, batches):
    """`batches` steps of each at a rising lr give the same losses, counts and weights, to float rounding."""
    for k, (x, y) in enumerate(_batches(batches)):
        lr = 0.1 * (k + 1) / batches
        (le, ce), (lg, cg) = eager(x, y, lr), step(x, y, lr)
        assert torch.allclose(le, lg, rtol=1e-4) and int(ce) == int(cg)
    for a, b in zip(model.state_dict().values(), twin.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5)


def _eager(model, opt):
    """The loop's plain step, in fp32 here."""
    return EagerStep(model, opt, RECIPE, contextlib.nullcontext)


def _batches(n, batch=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last),
             torch.randint(0, 10, (batch,), generator=g)) for _ in range(n)]


def _unchanged(before, model) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values(), strict=True))


def _momentum(model, opt):
    return [opt.state[p].get("momentum_buffer") for p in model.parameters()]


def test_sgd_update_matches_torch_sgd():
    for nesterov in (True, False):
        torch.manual_seed(0)
        params = [torch.randn(5, 3), torch.randn(7)]
        mine = [p.clone() for p in params]
        opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=1e-3)
        bufs = [torch.zeros_like(p) for p in mine]
        for k in range(4):
            grads = [torch.randn_like(p) for p in params]
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
            sgd_update(mine, [g.clone() for g in grads], bufs, torch.tensor(0.05), 0.9, nesterov, 1e-3)
            assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-7)
                       for a, b in zip(params, mine, strict=True)), (nesterov, k)


def test_capture_leaves_model_and_optimizer_as_they_were():
    model, opt = _setup()
    before = [t.clone() for t in model.state_dict().values()]
    GraphStep(model, opt, RECIPE, None, 16, CPU, capture=eager_replay)  # 3 warm-up steps and a check replay
    assert _unchanged(before, model)  # weights and BN statistics
    # a fresh run had no momentum; the step made zero buffers, which SGD's first step treats as none
    assert all(torch.count_nonzero(m) == 0 for m in _momentum(model, opt))


def test_captured_step_trains_as_the_eager_one():
    model, opt = _setup()
    model2, opt2 = _twin(model)
    graph = GraphStep(model2, opt2, RECIPE, None, 16, CPU, capture=eager_replay)
    _assert_trains_alike(_eager(model, opt), graph, model, model2, batches=6)
    for a, b in zip(_momentum(model, opt), _momentum(model2, opt2), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_failed_capture_falls_back_to_eager_and_says_why():
    model, opt = _setup()
    before = [t.clone() for t in model.state_dict().values()]

    def broken(fn):
        fn()  # gets as far as running the step once, as a capture would
        raise RuntimeError("operation not permitted when stream is capturing")

    eager = _eager(model, opt)
    with mock.patch.object(graph_step, "resolve_step", return_value=("graph", None)):  # as if on a GPU
        step, path, reason = make_step("graph", eager, model, opt, RECIPE, None, 16, CPU, 1, False, capture=broken)
    assert step is eager and path == "eager"
    assert reason == "CUDA graph capture failed (RuntimeError: operation not permitted when stream is capturing)"
    assert _unchanged(before, model)  # nothing is left changed
    assert all(m is None for m in _momentum(model, opt)) and all(p.grad is None for p in model.parameters())


def test_a_captured_step_is_chosen_where_it_can_run():
    model, opt = _setup()
    with mock.patch.object(graph_step, "resolve_step", return_value=("graph", None)):  # as if on a GPU
        step, path, reason = make_step("auto", None, model, opt, RECIPE, None, 16, CPU, 1, False, eager_replay)
    assert isinstance(step, GraphStep) and (path, reason) == ("cuda-graph", None)
    step, path, reason = make_step("auto", "eager-step", model, opt, RECIPE, None, 16, CPU, 1, True)
    assert (step, path, reason) == ("eager-step", "compiled", None)


@pytest.mark.parametrize("requested,device,world,expected", [
    ("auto", "cpu", 1, ("eager", None)),
    ("eager", "cuda", 1, ("eager", None)),
    ("auto", "cuda", 1, ("graph", None)),
    ("graph", "cpu", 1, ("eager", "a CUDA graph needs a CUDA device")),
    ("auto", "cuda", 2, ("eager", "under DDP the gradient all-reduce runs outside a capturable step")),
])
def test_which_step_runs(requested, device, world, expected):
    assert resolve_step(requested, torch.device(device), world) == expected


def test_a_compiled_model_is_captured_and_trains_as_the_eager_one():
    """--compile on a GPU: the graph records the compiled model's step (dynamo's eager backend stands in for
    inductor here; the warm-up traces it before capture). Its buffers and weights are the network's own, so the
    warm-up is undone and the training is the plain eager step's."""
    model, opt = _setup()
    model2, opt2 = _twin(model)
    before = [t.clone() for t in model2.state_dict().values()]
    compiled = torch.compile(model2, backend="eager")
    with mock.patch.object(graph_step, "resolve_step", return_value=("graph", None)):  # as if on a GPU
        step, path, reason = make_step("auto", None, compiled, opt2, RECIPE, None, 16, CPU, 1, True, eager_replay)
    assert isinstance(step, GraphStep) and (path, reason) == ("compiled-cuda-graph", None)
    assert _unchanged(before, model2)
    _assert_trains_alike(_eager(model, opt), step, model, model2, batches=4)


def test_a_compiled_model_whose_capture_fails_runs_compiled_and_says_why():
    model, opt = _setup()

    def broken(fn):
        raise RuntimeError("operation not permitted when stream is capturing")

    with mock.patch.object(graph_step, "resolve_step", return_value=("graph", None)):
        step, path, reason = make_step("auto", "compiled-step", torch.compile(model, backend="eager"), opt, RECIPE,
                                       None, 16, CPU, 1, True, capture=broken)
    assert (step, path) == ("compiled-step", "compiled") and reason.startswith("CUDA graph capture failed")


def test_an_unknown_step_is_refused():
    with pytest.raises(ValueError, match="unknown step 'fast'; choose one of auto, eager, graph"):
        resolve_step("fast", CPU, 1)


def test_a_batch_of_another_shape_is_refused():
    model, opt = _setup()
    step = GraphStep(model, opt, RECIPE, None, 16, CPU, capture=eager_replay)
    with pytest.raises(ValueError, match=r"batches of \(16, 3, 32, 32\)"):
        step(torch.zeros(8, 3, 32, 32), torch.zeros(8, dtype=torch.long), 0.1)


# ---------------------------------------------------------------- a graph that records nothing, a failed capture


def _reset_counters(model):
    def replay_without_counting(fn):
        def replay():
            before = [b.clone() for n, b in model.named_buffers() if n.endswith("num_batches_tracked")]
            fn()
            with torch.no_grad():
                for b, k in zip((b for n, b in model.named_buffers() if n.endswith("num_batches_tracked")), before,
                                strict=True):
                    b.copy_(k)
        return replay
    return replay_without_counting


@pytest.mark.parametrize("stand_in, why", [
    # an empty graph: what torch.cuda.graph records when the step's kernels go to another device's stream
    (lambda model: (lambda fn: (lambda: None)), "changed no weight and counted no batch in BatchNorm"),
    (_reset_counters, "counted no batch in BatchNorm"),
])
def test_a_graph_whose_replay_does_not_train_is_refused(stand_in, why):
    model, opt = _setup()
    before = [t.clone() for t in model.state_dict().values()]
    eager = _eager(model, opt)
    with mock.patch.object(graph_step, "resolve_step", return_value=("graph", None)):  # as if on a GPU
        step, path, reason = make_step("auto", eager, model, opt, RECIPE, None, 16, CPU, 1, False,
                                       capture=stand_in(model))
    assert step is eager and path == "eager"
    assert reason == f"CUDA graph capture failed (GraphCaptureError: the check replay {why}: the graph recorded " \
                     f"no training step)"
    assert _unchanged(before, model)
    assert all(m is None for m in _momentum(model, opt))


class FakeCuda:
    """torch.cuda's capture API as seen by cuda_capture, recording what it is asked (no GPU needed)."""

    def __init__(self, fail_in_capture_end: bool = False):
        self.calls: list = []
        self.current = "stream of device 0"
        self.fail = fail_in_capture_end
        fake = self

        class Graph:
            def replay(self):
                fake.calls.append("replay")

        class GraphContext:  # torch.cuda.graph: a capture stream made current, capture_end on the way out
            def __init__(self, graph):
                fake.calls.append("graph")

            def __enter__(self):
                fake.current = "capture stream"

            def __exit__(self, kind, value, tb):
                if kind is not None or fake.fail:  # capture_end raises, and the stream is left as it was
                    raise RuntimeError("CUDA error: operation failed due to a previous error during capture")
                fake.current = "stream of device 0"

        self.CUDAGraph, self.graph = Graph, GraphContext

    def set_device(self, device):
        self.calls.append(("set_device", device))

    def current_stream(self, device=None):
        return self.current

    def set_stream(self, stream):
        self.calls.append(("set_stream", stream))
        self.current = stream


def _patched(monkeypatch, fake: FakeCuda):
    for name in ("CUDAGraph", "graph", "set_device", "current_stream", "set_stream"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))


def test_capture_makes_the_runs_device_current_first(monkeypatch):
    fake = FakeCuda()
    _patched(monkeypatch, fake)
    device = torch.device("cuda", 1)
    replay = graph_step.cuda_capture(device)(lambda: fake.calls.append("step recorded"))
    replay()
    assert fake.calls == [("set_device", device), "graph", "step recorded", "replay"]


def test_a_failed_capture_reports_its_root_cause_and_puts_the_stream_back(monkeypatch):
    fake = FakeCuda()
    _patched(monkeypatch, fake)

    def step():
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    with pytest.raises(RuntimeError, match="operation not permitted when stream is capturing"):
        graph_step.cuda_capture(torch.device("cuda", 0))(step)  # not capture_end's "previous error"
    assert fake.current == "stream of device 0" and ("set_stream", "stream of device 0") in fake.calls
    fake = FakeCuda(fail_in_capture_end=True)  # nothing failed inside: capture_end's error is the cause
    _patched(monkeypatch, fake)
    with pytest.raises(RuntimeError, match="previous error during capture"):
        graph_step.cuda_capture(torch.device("cuda"))(lambda: None)
    assert fake.current == "stream of device 0" and not any(c[0] == "set_device" for c in fake.calls
                                                            if isinstance(c, tuple))


def test_work_after_the_update_is_captured_and_its_warm_up_put_back():
    # The seam for a weight average: the PostUpdate runs inside the recorded step, after the SGD update, and
    # what the capture's warm-up and check replay did to its tensors is undone.
    model, opt = _setup()

    class CountSteps:
        def __init__(self):
            self.count = torch.zeros(())
            self.seen = []

        def __call__(self):
            self.count += 1
            self.seen.append(next(model.parameters()).detach().clone())  # the weights after this step's update

        def tensors(self):
            return [self.count]

    post = CountSteps()
    step = GraphStep(model, opt, RECIPE, None, 16, CPU, capture=eager_replay, post_update=post)
    assert int(post.count) == 0  # three warm-up steps and a check replay, put back
    for x, y in _batches(2):
        step(x, y, 0.05)
    assert int(post.count) == 2 and torch.equal(post.seen[-1], next(model.parameters()))
