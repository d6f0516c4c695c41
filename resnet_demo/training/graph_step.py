"""One training step behind one call, `step(x, y, lr) -> (loss, correct)`: eager, or replayed as a CUDA graph.

Why a graph: a CIFAR ResNet's step is a few hundred small kernels. Launched one at a time from Python, a GPU
spends most of the step waiting for the host (ResNet-20 at batch 512 on an H200: about 10 ms a step, of which
perhaps 2 ms is GPU work). A CUDA graph records the whole step once (forward, loss, backward, the SGD update,
the BatchNorm statistics) and replays it with one launch. What changes from step to step lives in device
tensors the graph reads: the batch, copied into static buffers, and the learning rate. Nothing in the step waits
for the GPU: it returns the batch's loss and correct count as device tensors, which the loop adds up on the
device and reads only when it reports.

Why by hand rather than torch.compile(mode="reduce-overhead"): capture needs only torch.cuda.graph, stable since
torch 1.10, costs a second instead of minutes of compilation per depth, and does not depend on the compiler
stack of the installed torch; `--compile` in its default mode was slower than eager on a GPU. With `--compile`
on a GPU the compiled network runs inside this capture instead: inductor's fused kernels (BatchNorm, ReLU and the
shortcut's add in fewer passes over memory), replayed with one launch. It stays behind the flag until a GPU has
measured it faster (benchmarks/gpu.py, `throughput.r20.compiled`).

The update is torch.optim.SGD's (dampening 0, optional Nesterov, L2 weight decay added to the gradient) written
with foreach ops so the learning rate can be a device tensor; torch's SGD reads a tensor lr back to the host.
The momentum buffers are the optimizer's own, so checkpoints are the same whichever step wrote them.

Capture needs CUDA and one process (a DDP gradient all-reduce is not captured). It runs with the run's device
made current (torch.cuda.graph captures on a stream of the current device: for `--device cuda:1` with device 0
current, the step's kernels would go to device 1's stream, outside the capture, and the graph would be empty).
One check replay must then do a real step: change the weights and count one more batch in BatchNorm. If
capture raises (its root cause is kept, not capture_end's consequential error, and the current stream is put
back), or the check replay raises or changes nothing, the model and optimizer are put back exactly as they
were and the eager step runs instead; make_step says which step runs and why, for the run's events and
metrics.json.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F

from resnet_demo.training.recipes import Recipe

STEP_CHOICES = ("auto", "eager", "graph")
WARMUP_STEPS = 3  # before capture, on a side stream: cuDNN picks its algorithms, the allocator settles

Capture = Callable[[Callable[[], None]], Callable[[], None]]  # records fn, returns what replays it

# A step: one batch's forward, backward and update at the given lr; returns the batch's loss and its number of
# correct predictions as tensors on the device, unsynchronised, so that a step may run ahead of the host.
Step = Callable[[torch.Tensor, torch.Tensor, float], "tuple[torch.Tensor, torch.Tensor]"]


class GraphCaptureError(RuntimeError):
    """Capture or the check replay failed; the model and optimizer are as they were before."""


class PostUpdate(Protocol):
    """Work captured into the step after the SGD update (a weight average, say): it must be capturable (device
    tensors only, no host reads), and tensors() names every tensor it writes, so that the capture's warm-up and
    check replay can put them back."""

    def __call__(self) -> None: ...

    def tensors(self) -> list[torch.Tensor]: ...


def _forward_loss(model, x, y, recipe: Recipe, amp_dtype: torch.dtype | None):
    # autocast's weight cache must be off under capture: cached casts would be stale in every replay
    with torch.autocast(x.device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None,
                        cache_enabled=False):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
    return logits, loss


@torch.no_grad()
def sgd_update(params: list[torch.Tensor], grads: list[torch.Tensor], bufs: list[torch.Tensor], lr: torch.Tensor,
               momentum: float, nesterov: bool, weight_decay: float) -> None:
    """torch.optim.SGD's step with dampening 0, the lr a 0-d device tensor; overwrites the gradients."""
    if weight_decay:
        torch._foreach_add_(grads, params, alpha=weight_decay)
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, grads)
    if nesterov:
        torch._foreach_add_(grads, bufs, alpha=momentum)
        torch._foreach_mul_(grads, lr)
        update = grads
    else:
        update = torch._foreach_mul(bufs, lr)
    torch._foreach_sub_(params, update)


def cuda_capture(device: torch.device) -> Capture:
    def capture(fn: Callable[[], None]) -> Callable[[], None]:
        if device.index is not None:
            torch.cuda.set_device(device)  # the capture stream is the current device's: it must be the run's
        stream = torch.cuda.current_stream(device)
        graph = torch.cuda.CUDAGraph()
        raised: list[BaseException] = []

        def recorded() -> None:
            try:
                fn()
            except BaseException as e:
                raised.append(e)
                raise

        try:
            with torch.cuda.graph(graph):  # the documented whole-network pattern: backward and optimizer inside
                recorded()
        except Exception as e:
            # A failure inside the capture makes capture_end raise too ("operation failed due to a previous
            # error during capture"), and torch.cuda.graph then leaves its capture stream current.
            torch.cuda.set_stream(stream)
            root = raised[0] if raised else e
            raise root.with_traceback(root.__traceback__) from None
        return graph.replay

    return capture


def _on_side_stream(fn: Callable[[], None], times: int, device: torch.device) -> None:
    if device.type != "cuda":
        for _ in range(times):
            fn()
        return
    side, main = torch.cuda.Stream(device), torch.cuda.current_stream(device)
    side.wait_stream(main)
    with torch.cuda.stream(side):
        for _ in range(times):
            fn()
    main.wait_stream(side)


class GraphStep:
    """The whole step as one CUDA graph over static buffers; see the module docstring."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, recipe: Recipe,
                 amp_dtype: torch.dtype | None, batch_size: int, device: torch.device, capture: Capture | None = None,
                 warmup_steps: int = WARMUP_STEPS, post_update: PostUpdate | None = None):
        self.model, self.recipe, self.amp_dtype = model, recipe, amp_dtype
        self.post_update = post_update
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.x = torch.zeros(batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
        self.y = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.lr = torch.zeros((), dtype=torch.float32, device=device)
        # A zero buffer gives what SGD's first step does without one (buf = grad), so a fresh run, a resumed one
        # and a parked one without momentum all take the same path.
        created = [p for p in self.params if optimizer.state[p].get("momentum_buffer") is None]
        for p in created:
            optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        self.bufs = [optimizer.state[p]["momentum_buffer"] for p in self.params]
        kept = [*self.params, *model.buffers(), *self.bufs, *(post_update.tensors() if post_update else ())]
        saved = [t.detach().clone() for t in kept]
        try:
            # The warm-up and the check replay are real steps on the zero batch; all they change is put back.
            _on_side_stream(self._body, warmup_steps, device)
            self.replay = (capture or cuda_capture(device))(self._body)
            self._check_replay(device)
        except Exception as e:
            self._put_back(kept, saved)
            for p in created:
                del optimizer.state[p]["momentum_buffer"]
            for p in self.params:
                p.grad = None
            raise GraphCaptureError(f"{type(e).__name__}: {e}") from e
        self._put_back(kept, saved)

    def _check_replay(self, device: torch.device) -> None:
        """One replay, which must do the step: an empty graph would pass any check that only asks whether
        replaying raised. Raises GraphCaptureError saying what did not happen."""
        counters = [b for name, b in self.model.named_buffers() if name.endswith("num_batches_tracked")]
        weights = [p.detach().clone() for p in self.params]
        counted = [c.detach().clone() for c in counters]
        self.lr.fill_(self.recipe.lr or 0.1)  # lr 0 would leave the weights where they are
        self.replay()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # an asynchronous fault of the replay surfaces here, not later
        with torch.no_grad():  # one read each, on the device
            moved = not weights or bool(torch.stack([(p != w).any() for p, w in zip(self.params, weights,
                                                                                     strict=True)]).any())
            ticked = not counters or bool((torch.stack(counters) == torch.stack(counted) + 1).all())
        if not (moved and ticked):
            missing = [what for what, ok in (("changed no weight", moved), ("counted no batch in BatchNorm", ticked))
                       if not ok]
            raise GraphCaptureError(f"the check replay {' and '.join(missing)}: the graph recorded no training step")

    @staticmethod
    @torch.no_grad()
    def _put_back(kept: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
        for t, s in zip(kept, saved, strict=True):
            t.copy_(s)  # in place: the graph holds these very tensors

    def _body(self) -> None:
        for p in self.params:
            p.grad = None  # backward then writes fresh gradients (under capture: into the graph's own memory)
        logits, loss = _forward_loss(self.model, self.x, self.y, self.recipe, self.amp_dtype)
        loss.backward()
        r = self.recipe
        with torch.no_grad():
            sgd_update(self.params, [p.grad for p in self.params], self.bufs, self.lr, r.momentum, r.nesterov,
                       r.weight_decay)
            if self.post_update is not None:
                self.post_update()
            self.correct = (logits.argmax(1) == self.y).sum()
        self.loss = loss.detach()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape != self.x.shape:
            raise ValueError(f"a captured step takes batches of {tuple(self.x.shape)}, got {tuple(x.shape)}")
        self.x.copy_(x)
        self.y.copy_(y)
        self.lr.fill_(lr)  # a kernel argument, no copy from the host
        self.replay()
        return self.loss, self.correct


def resolve_step(requested: str, device: torch.device, world: int) -> tuple[str, str | None]:
    """("graph" | "eager", why the graph was not used, when it was asked for or is the device's default)."""
    if requested not in STEP_CHOICES:
        raise ValueError(f"unknown step {requested!r}; choose one of {', '.join(STEP_CHOICES)}")
    if requested == "eager" or (requested == "auto" and device.type != "cuda"):
        return "eager", None
    if device.type != "cuda":
        return "eager", "a CUDA graph needs a CUDA device"
    if world > 1:
        return "eager", "under DDP the gradient all-reduce runs outside a capturable step"
    return "graph", None


def make_step(requested: str, eager: Step, model: torch.nn.Module, optimizer: torch.optim.Optimizer, recipe: Recipe,
              amp_dtype: torch.dtype | None, batch_size: int, device: torch.device, world: int, compiled: bool,
              capture: Capture | None = None, post_update: PostUpdate | None = None) -> tuple[Step, str, str | None]:
    """(the step to train with, its path for the record, why not the graph): the captured graph where asked for
    and possible, else `eager`. `model` is what the step runs: the network, or its torch.compile wrapper
    (`compiled`), whose kernels (BatchNorm, ReLU and the shortcut's add fused) are then what the graph records:
    the warm-up compiles them before capture. The path is "cuda-graph", "compiled-cuda-graph", "eager" or
    "compiled". `post_update`: see PostUpdate (the eager step must then do the same work itself)."""
    kind, reason = resolve_step(requested, device, world)
    if kind == "graph":
        try:
            step = GraphStep(model, optimizer, recipe, amp_dtype, batch_size, device, capture=capture,
                             post_update=post_update)
            return step, "compiled-cuda-graph" if compiled else "cuda-graph", None
        except GraphCaptureError as e:
            reason = f"CUDA graph capture failed ({e})"
    return eager, "compiled" if compiled else "eager", reason
