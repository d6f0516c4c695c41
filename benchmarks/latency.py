"""What a student waits for in the app, measured in-process through the functions the app calls.

- prediction: images.load_input (decode, crop, resize, normalise an uploaded photo) + inference.probabilities;
- attribution: explain.attribute (the app's entry point, private model copy included) for every method;
- evaluation: evaluate.evaluate on the 10,000 test images (what `ship` and `evaluate` run), and ResNet-110's
  speed at the CPU's evaluation batch against a 1000-image batch;
- attack: attacks.fool (what the Fool-it page runs) with FGSM and with PGD, 10 steps, on ResNet-110, with one
  torch thread (the app server's setting) and with all of them.
"""
from __future__ import annotations

import torch

from .common import Row, Workspace, median_time, skipped, synthetic_photo

PREDICT_TARGET_MS = 30.0   # ResNet-56
IG_TARGET_S = 0.5
IG_STEPS = 50
FGSM_TARGET_S = 0.5  # ResNet-110, one image
PHOTO_SIZE = (1024, 768)


def _models(ws: Workspace) -> tuple[dict[int, torch.nn.Module], str]:
    from resnet_demo.store.registry import shipped_models
    from resnet_demo.store.weights import load_model

    directory, note = ws.weights()
    by_depth = {}
    for e in shipped_models(directory):
        if not e.arch.plain and e.arch.shortcut == "A" and e.arch.depth not in by_depth:
            by_depth[e.arch.depth] = load_model(e.weights, e.sha256)[0]
    return by_depth, note


def predict_rows(ws: Workspace, quick: bool, log) -> list[Row]:
    from resnet_demo.data.images import load_input
    from resnet_demo.nets.inference import probabilities
    from resnet_demo.nets.paper import PRESET_DEPTHS

    models, note = _models(ws)
    photo = synthetic_photo(*PHOTO_SIZE)
    n = 5 if quick else 30
    decode_s, _ = median_time(lambda: load_input(photo, "upload.jpg"), n, warmup=2)
    x = load_input(photo, "upload.jpg")[0]
    rows = []
    for depth in PRESET_DEPTHS:
        model = models[depth]
        log(f"  predict ResNet-{depth} ({n} repeats) ...")
        # median_time calls each lambda before the loop moves on; the default argument binds it all the same
        total_s, samples = median_time(lambda m=model: probabilities(m, load_input(photo, "upload.jpg")[0]), n,
                                       warmup=3)
        net_s, _ = median_time(lambda m=model: probabilities(m, x), n, warmup=1)
        target = f"<= {PREDICT_TARGET_MS:g} ms" if depth == 56 else ""
        rows.append(Row(f"predict.r{depth}", f"CPU prediction of one uploaded image, ResNet-{depth}", 1000 * total_s,
                        "ms",
                        target, (1000 * total_s <= PREDICT_TARGET_MS) if depth == 56 else None,
                        f"median of {n}; {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG: decode+resize {1000 * decode_s:.1f} ms, "
                        f"network {1000 * net_s:.1f} ms; {note}", extra={"samples_s": samples}))
    return rows


def explain_rows(ws: Workspace, depths: list[int], quick: bool, log) -> list[Row]:
    try:
        from resnet_demo.interpret import explain
    except ImportError as e:
        return [skipped("explain", "Captum attributions", "s", f"IG <= {IG_TARGET_S:g} s",
                        f"resnet_demo.interpret.explain cannot be imported ({e})")]
    from resnet_demo.data.cifar import load_cifar10
    from resnet_demo.data.images import to_tensor

    models, note = _models(ws)
    data_dir, data_note = ws.data_dir()
    image = load_cifar10(str(data_dir)).test.images[0]
    x = to_tensor(image)
    n = 1 if quick else 5
    rows = []
    for depth in depths:
        model = models[depth]
        for key, method in explain.METHODS.items():
            options = {"n_steps": IG_STEPS} if key == "ig" else {}
            log(f"  explain ResNet-{depth} {key} ({n} repeats) ...")
            wall_s, samples = median_time(
                lambda m=model, k=key, o=options: explain.attribute(m, x, k, target=0, **o), n, warmup=1)
            is_ig = key == "ig"
            rows.append(Row(f"explain.r{depth}.{key}", f"CPU {method.label}, ResNet-{depth}, one image", wall_s, "s",
                            f"<= {IG_TARGET_S:g} s" if is_ig else "", (wall_s <= IG_TARGET_S) if is_ig else None,
                            f"explain.attribute() wall time incl. its private model copy, median of {n}"
                            + (f"; {IG_STEPS} steps" if is_ig else "") + f"; {note}",
                            extra={"samples_s": samples, "options": options}))
    return rows


def evaluate_rows(ws: Workspace, quick: bool, log) -> list[Row]:
    from resnet_demo.data.cifar import Split, load_cifar10
    from resnet_demo.data.loader import eval_batch_size
    from resnet_demo.store.evaluate import evaluate

    models, note = _models(ws)
    data_dir, data_note = ws.data_dir()
    test = load_cifar10(str(data_dir)).test
    n = 1 if quick else 3

    def row(key: str, depth: int, split: Split, batch: int | None, label: str) -> Row:
        log(f"  {label} ({n} repeats) ...")
        seconds, samples = median_time(lambda: evaluate(models[depth], split, batch_size=batch), n,
                                       warmup=0 if quick else 1)
        call = "evaluate.evaluate()" if batch is None else f"evaluate.evaluate(batch_size={batch})"
        return Row(key, label, seconds, "s", "", None,
                   f"{call}, median of {n}: {len(split) / seconds:,.0f} img/s; {data_note}; {note}",
                   extra={"samples_s": samples})

    rows = [row("eval.cpu.r20", 20, test, None, f"CPU evaluation of the {len(test):,} test images, ResNet-20")]
    # Why eval_batch_size() is smaller on the CPU: the deepest model, at the default and at 1000 images a batch.
    part = Split(test.images[:2000], test.labels[:2000])
    for batch in (eval_batch_size("cpu"), 1000):
        rows.append(row(f"eval.cpu.r110.b{batch}", 110, part, batch,
                        f"CPU evaluation of {len(part):,} test images, ResNet-110, batch {batch}"))
    return rows


def _wall_and_cpu(fn, repeats: int) -> tuple[float, float, list[float]]:
    """Median wall seconds, median CPU seconds of this process (what the call costs on an idle core, whatever else
    runs on the machine), and the wall samples; after one untimed call."""
    import statistics
    import time

    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu), wall


def attack_rows(ws: Workspace, quick: bool, log) -> list[Row]:
    from resnet_demo.data.cifar import load_cifar10
    from resnet_demo.interpret.attacks import Settings, fool

    models, note = _models(ws)
    data_dir, data_note = ws.data_dir()
    image = load_cifar10(str(data_dir)).test.images[0]
    threads = torch.get_num_threads()
    rows = []
    for name, settings, n in (("fgsm", Settings("fgsm", 4.0), 3 if quick else 20),
                              ("pgd", Settings("pgd", 4.0), 1 if quick else 5)):
        for t in sorted({1, threads}):
            torch.set_num_threads(t)
            log(f"  {settings.describe()} ResNet-110, {t} thread(s) ({n} repeats) ...")
            try:
                wall_s, cpu_s, samples = _wall_and_cpu(lambda s=settings: fool(models[110], image, s), n)
            finally:
                torch.set_num_threads(threads)
            is_fgsm = name == "fgsm"
            rows.append(Row(f"attack.r110.{name}.t{t}", f"CPU {settings.method()}, ResNet-110, one image, {t} "
                            f"thread{'s' if t > 1 else ''}", wall_s, "s", f"<= {FGSM_TARGET_S:g} s" if is_fgsm else "",
                            (wall_s <= FGSM_TARGET_S) if is_fgsm else None,
                            f"attacks.fool() wall time (the clean and attacked forward passes included), eps 4/255, "
                            f"median of {n}; CPU time {cpu_s:.3f} s; {data_note}; {note}",
                            extra={"samples_s": samples, "cpu_s": cpu_s, "threads": t}))
    return rows
