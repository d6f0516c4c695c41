"""Time to accuracy: how long a real train() run takes to teach a network something, on the real data only.

GPU: wall time of the `table6` preset, trained as on a GPU without the per-epoch test curve (--eval-every 0),
from the train() call to the end of its final evaluation (the full 10,000 test images), when that reaches the
paper's Table 6 accuracy; a run still training at four times the target time is stopped: not reached.
CPU: the test accuracy the `classroom` preset of ResNet-20 reaches on the machine at hand within 5 minutes of
wall time on the full set, and within 3 on the built-in subset (the one a machine without the data set trains
on). The preset runs as a teacher would run it; should it not finish in time it is stopped there and its
checkpoint is evaluated, which the notes say.
"""
from __future__ import annotations

import time

import torch

from .common import Row, Workspace, figure_id, skipped

GPU_TARGET_S = {20: 15, 56: 45, 110: 90}  # the goals of "GPU training at the hardware's pace"
GPU_PRESET = "table6"
GPU_EVAL_EVERY = 0  # as benchmarks.gpu trains: no per-epoch test curve, the final evaluation decides


def _no_real_data(ws: Workspace) -> str | None:
    if ws.real_data is None:
        return "no real CIFAR-10 found (pass --data-dir, or set RESNET_DEMO_DATA); accuracy needs the genuine set"
    return None


def gpu_rows(ws: Workspace, depths: list[int], log) -> list[Row]:
    from resnet_demo.nets.paper import TABLE6_ERROR

    rows = []
    for depth in depths:
        target_s = GPU_TARGET_S.get(depth, 90)
        rid, name = figure_id("tta", depth), f"GPU time to paper error, ResNet-{depth} ({GPU_PRESET} preset)"
        reason = ("no CUDA GPU (torch.cuda.is_available() is False)" if not torch.cuda.is_available()
                  else _no_real_data(ws))
        if reason:
            rows.append(skipped(rid, name, "s", f"< {target_s} s", reason))
            continue
        goal = 1 - TABLE6_ERROR[depth] / 100
        log(f"  cuda ResNet-{depth}: {GPU_PRESET} preset, test accuracy >= {100 * goal:.2f}%? "
            f"(cap {4 * target_s} s) ...")
        r = time_to_accuracy(ws.real_data, ws.new_run_dir(), depth, "cuda", GPU_PRESET, goal,
                             time.perf_counter() + 4 * target_s, eval_every=GPU_EVAL_EVERY)
        rows.append(accuracy_row(rid, name, r, goal, target_s))
    return rows


def accuracy_row(rid: str, name: str, r: dict, goal: float, target_s: float) -> Row:
    if r["reached_s"] is not None:
        return Row(rid, name, r["reached_s"], "s", f"< {target_s} s", r["reached_s"] < target_s,
                   f"test accuracy {100 * r['reached_acc']:.2f}% >= {100 * goal:.2f}% at {r['reached_at']} (epoch "
                   f"{r['reached_epoch']} of {r['epochs']}); wall time from the train() call (data loading included); "
                   f"step: {r['step_path']}", extra=r)
    best = "never evaluated" if r["best_acc"] is None else f"best test accuracy {100 * r['best_acc']:.2f}%"
    return Row(rid, name, None, "s", f"< {target_s} s", False,
               f"not reached within {r['wall_s']:.0f} s ({r['status']}): {best} after {len(r['history'])} of "
               f"{r['epochs']} epoch(s), goal {100 * goal:.2f}%; step: {r['step_path']}", extra=r)


def time_to_accuracy(data_dir, out, depth: int, device: str, preset: str, goal: float, deadline: float,
                     stop_at_goal: bool = False, eval_every: int = 1, **settings) -> dict:
    """One real train() run, timed from the call: when the test accuracy first reached `goal`, each epoch's
    accuracy and wall time, which step ran. Stopped at `deadline` (perf_counter), or at the goal if asked.

    The test accuracy is that of the per-epoch test curve (every `eval_every` epochs; 0: none) and, for a run
    that finishes, its final evaluation (the whole test set, single view, fp32); `reached_at` says which."""
    from resnet_demo.data.cifar import load_cifar10  # noqa: F401  (import cost outside the timed call)
    from resnet_demo.training.config import TrainConfig
    from resnet_demo.training.train import train

    r = {"depth": depth, "preset": preset, "goal": goal, "eval_every": eval_every, "reached_s": None,
         "reached_epoch": None, "reached_acc": None, "reached_at": None, "best_acc": None, "history": [],
         "step_path": None, "step_fallback": None, "epochs": None, "batch_size": None, "status": None}
    t0 = time.perf_counter()
    listener = _accuracy_listener(r, goal, t0)

    def stop() -> bool:
        return (stop_at_goal and r["reached_s"] is not None) or time.perf_counter() > deadline

    cfg = TrainConfig(depth=depth, preset=preset, device=device, data_dir=str(data_dir), out=str(out), download=False,
                      eval_every=eval_every, **settings)
    result = train(cfg, listener=listener, should_stop=stop)
    r["status"] = result.get("status", "completed")
    r["final_test_accuracy"] = result.get("test_accuracy")
    r["wall_s"] = time.perf_counter() - t0
    return r


def _accuracy_listener(r: dict, goal: float, t0: float):
    def seen(acc: float, epoch: int, at: str) -> None:
        r["best_acc"] = max(r["best_acc"] or 0.0, acc)
        if r["reached_s"] is None and acc >= goal:
            r.update(reached_s=time.perf_counter() - t0, reached_epoch=epoch, reached_acc=acc, reached_at=at)

    def listener(e: dict) -> None:
        if e.get("type") == "start":
            r.update(step_path=e.get("step_path"), step_fallback=e.get("step_fallback"), epochs=e["epochs"],
                     batch_size=e["batch_size"], hardware=e.get("device"))
        elif e.get("type") == "epoch":
            r["history"].append({"epoch": e["epoch"], "test_acc": e["test_acc"], "train_acc": e["train_acc"],
                                 "wall_s": round(time.perf_counter() - t0, 2)})
            if e["test_acc"] is not None:
                seen(e["test_acc"], e["epoch"], "the per-epoch test curve")
        elif e.get("type") == "end" and e.get("status") == "completed":
            seen(e["test_accuracy"], r["epochs"], "the final evaluation")

    return listener


# The classroom preset's goals on two CPU cores: (data, wall-time budget in s, accuracy to reach).
CLASSROOM_GOALS = {"full": (300, 0.82), "builtin": (180, 0.75)}


def cpu_classroom_rows(ws: Workspace, log) -> list[Row]:
    """The classroom preset as a teacher starts it: on the full set (if found) and on the built-in subset."""
    return [_classroom_row(ws, "full", log), _classroom_row(ws, "builtin", log)]


def _classroom_row(ws: Workspace, data: str, log) -> Row:
    import tempfile

    from resnet_demo.data import builtin
    from resnet_demo.data.cifar import load_cifar10
    from resnet_demo.nets.model import Arch, CifarResNet
    from resnet_demo.store.evaluate import evaluate
    from resnet_demo.training.checkpoint import load_checkpoint
    from resnet_demo.training.config import TrainConfig
    from resnet_demo.training.recipes import FULL_TRAIN_IMAGES, get_recipe
    from resnet_demo.training.train import train

    budget, goal = CLASSROOM_GOALS[data]
    images = FULL_TRAIN_IMAGES if data == "full" else builtin.TRAIN_IMAGES
    what = "the full set" if data == "full" else "the built-in subset"
    rid = "tta.cpu.classroom.r20" + ("" if data == "full" else ".builtin")
    name, target = f"CPU classroom ResNet-20 on {what}: test accuracy in {budget // 60} min", f">= {100 * goal:.0f}%"
    if data == "full" and (reason := _no_real_data(ws)):
        return skipped(rid, name, "%", target, reason)
    recipe = get_recipe("classroom", "cpu", train_images=images)
    log(f"  cpu ResNet-20 classroom preset on {what} ({recipe.epochs} epochs, batch {recipe.batch_size}), "
        f"stop at {budget} s ...")
    out = ws.new_run_dir()
    with tempfile.TemporaryDirectory() as nothing:  # no full set there: the preset falls back to the built-in one
        cfg = TrainConfig(depth=20, preset="classroom", device="cpu", out=str(out), download=False,
                          data_dir=str(ws.real_data) if data == "full" else nothing)
        t0 = time.perf_counter()
        result = train(cfg, should_stop=lambda: time.perf_counter() - t0 > budget)
        wall = time.perf_counter() - t0
    if result.get("status") == "stopped":
        model = CifarResNet(Arch(20))
        load_checkpoint(out / "checkpoint.safetensors", model, torch.optim.SGD(model.parameters(), lr=0.0))
        test = load_cifar10(str(ws.real_data)).test if data == "full" else builtin.load().test
        acc = evaluate(model, test)["accuracy"]
        note = (f"did NOT finish: stopped at {budget} s at step {result['step']} of "
                f"{recipe.epochs * (images // recipe.batch_size)}; accuracy of that checkpoint (mid-schedule)")
    else:
        acc = result["test_accuracy"]
        note = (f"finished in {wall:.0f} s wall ({result['steps']} steps; final evaluation of "
                f"{result['test_images']:,} test images included)")
    return Row(rid, name, 100 * acc, "%", target, acc >= goal, f"{note}; {torch.get_num_threads()} torch threads",
               extra={"wall_s": wall, "epochs": recipe.epochs, "batch_size": recipe.batch_size})
