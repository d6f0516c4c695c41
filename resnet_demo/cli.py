"""`python -m resnet_demo info | train | teach | evaluate | predict | models | download | ship | retire | export`.

The JSON outputs are a contract (tests, the app and the benchmarks rely on them). Errors print one line
starting with "error:" and exit non-zero; no traceback for anything a user can cause.
"""
from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from pathlib import Path

from resnet_demo.training.config import TrainConfig


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    prog = "resnet-demo" if Path(sys.argv[0]).name == "resnet-demo" else "python -m resnet_demo"  # pip's command
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="parameters, MACs and layer counts of an architecture")
    TrainConfig.add_arguments(p.add_argument_group("architecture"), only=("depth", "plain", "shortcut"))
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train on CIFAR-10 (CPU, one GPU, or torchrun for several)")
    TrainConfig.add_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--ignore-memory-limit", action="store_true",
                   help="start even if the estimated memory need is above what this machine has free (or above "
                        "RESNET_DEMO_MAX_TRAIN_GB / _MAX_DEPTH / _MAX_BATCH); it may then be killed for lack of memory")

    _teach_parser(sub)

    p = sub.add_parser("evaluate", help="test-set accuracy, per-class accuracy, confusion matrix (without the full "
                                        "set: on the built-in test subset)")
    p.add_argument("--weights", required=True, help="a model name (see `models`) or a .safetensors file")
    p.add_argument("--data-dir")
    p.add_argument("--images", metavar="DIR", help="for a model taught its own classes: a folder with one subfolder "
                                                   "of images per class, named as the model's classes")
    p.add_argument("--device", default="auto")
    p.add_argument("--flip-tta", action="store_true")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", help="top-k classes of image files")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", help="a model name (see `models`), a .safetensors file or a folder holding "
                                   "model.safetensors (what `teach --out` wrote); default: the best shipped ResNet")
    p.add_argument("--top", type=_positive, default=5)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("models", help="shipped models, finished runs and taught models")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("download", help="download the full CIFAR-10 (170 MB) with a progress bar")
    p.add_argument("--data-dir", help="where to put it (default: $RESNET_DEMO_DATA, else ./data)")

    p = sub.add_parser("ship", help="copy a finished run into weights/ and record it in the manifest")
    p.add_argument("run", help="a finished run folder (with metrics.json)")
    p.add_argument("--name", help="manifest name (default: resnet20, plain56, ...)")
    p.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size)")
    p.add_argument("--data-dir", help="the real test set, to evaluate the shipped file itself")
    p.add_argument("--no-download", action="store_true")

    p = sub.add_parser("retire", help="drop a shipped model's weights for a better one of its architecture; "
                                      "its training history stays for Fig. 6")
    p.add_argument("name", help="the shipped model to retire, e.g. resnet20")
    p.add_argument("--for", dest="successor", required=True, metavar="NAME",
                   help="the shipped model that supersedes it, e.g. resnet20-e100")

    p = sub.add_parser("export", help="write a model as safetensors or ONNX, with its architecture and "
                                      "normalisation in the metadata")
    p.add_argument("name", help="a model name (see `models`, e.g. resnet56-e100 or run:<id>) or a .safetensors file")
    p.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors")
    p.add_argument("--out", help="the file to write (default: NAME.safetensors or NAME.onnx here)")
    return parser


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.2, got {text!r}") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction at least 0 and below 1, got {v}")
    return v


def _teach_parser(sub) -> None:
    from resnet_demo.data.folder import MAX_PER_CLASS
    from resnet_demo.training.teach import SCRATCH, TeachConfig

    d = TeachConfig()
    p = sub.add_parser("teach", help="teach a network classes of your own from a folder of images: one subfolder "
                                     "per class, named after the class")
    p.add_argument("folder", metavar="DIR", help="one subfolder of images per class (or a project file saved by "
                                                 "--project or the app)")
    p.add_argument("--out", required=True, help="the folder to write model.safetensors and metrics.json into")
    p.add_argument("--from", dest="start", metavar=f"NAME|{SCRATCH}",
                   help="the trained model to start from (see `models`; default: the shipped ResNet-20), or "
                        f"{SCRATCH} for random weights")
    p.add_argument("--depth", type=int, default=d.depth, help=f"with --from {SCRATCH}: the ResNet's depth")
    p.add_argument("--steps", type=_positive, default=d.steps, help=f"training steps (default {d.steps})")
    p.add_argument("--batch-size", type=_positive, default=d.batch_size)
    p.add_argument("--lr", type=float, help="peak learning rate (default: 0.05 from a trained model, 0.1 from "
                                            "scratch)")
    p.add_argument("--holdout", type=_fraction, default=d.holdout, metavar="FRACTION",
                   help=f"the share of each class's images held out to test on (default {d.holdout})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-per-class", type=_positive, default=MAX_PER_CLASS,
                   help=f"images read per class at most (default {MAX_PER_CLASS}; the first by file name)")
    p.add_argument("--compare", action="store_true",
                   help=f"also teach the same images from random weights, to see what starting from a trained "
                        f"model is worth (ignored with --from {SCRATCH})")
    p.add_argument("--project", metavar="FILE", help="also save the classes, images and model as one project file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the record (metrics.json) as one line of JSON")


def cmd_info(args) -> int:
    from resnet_demo.nets.model import Arch, describe
    from resnet_demo.nets.paper import TABLE6_PARAMS_M

    info = describe(Arch(args.depth, args.plain, args.shortcut))
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['label']}: {info['params']:,} parameters ({info['params'] / 1e6:.2f}M"
          + (f"; Table 6: {TABLE6_PARAMS_M[args.depth]}M" if args.depth in TABLE6_PARAMS_M and not args.plain else "")
          + f"), {info['macs'] / 1e6:.1f}M MACs per image")
    print(f"  {info['weighted_layers']} weighted layers = 1 stem conv + 3 stages x {info['blocks_per_stage']} blocks "
          f"x 2 convs + 1 fc")
    for s in info["stages"]:
        print(f"  stage {s['stage']}: {s['blocks']} blocks, {s['filters']} filters, "
              f"{s['output_size']}x{s['output_size']} maps")
    print(f"  shortcuts: {info['shortcuts']} ({'none: plain net' if args.plain else 'option ' + args.shortcut})")
    return 0


class ProgressPrinter:
    """Draws the event stream as a tqdm bar; epoch summaries go above it."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar = None

    def __call__(self, e: dict) -> None:
        from tqdm import tqdm

        kind = e["type"]
        if kind == "start":
            resumed = f", resuming at step {e['resumed_from_step']}" if e.get("resumed_from_step") else ""
            precision = e.get("config", {}).get("precision_used")
            print(f"{e['label']} ({e['params']:,} params) on {e['device']}: {e['epochs']} epochs x "
                  f"{e['steps_per_epoch']} steps, batch {e['batch_size']}, {e['train_images']:,} train images"
                  f"{', ' + precision if precision else ''}{resumed}", file=sys.stderr)
            if not self.quiet:
                self.bar = tqdm(total=e["total_steps"], initial=e.get("resumed_from_step") or 0, unit="step",
                                dynamic_ncols=True, file=sys.stderr)
        elif kind == "step" and self.bar is not None:
            self.bar.update(e["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{e['loss']:.3f}", lr=f"{e['lr']:.3g}", img_s=f"{e['images_per_s']:.0f}")
        elif kind == "epoch":
            line = (f"epoch {e['epoch']}: train loss {e['train_loss']:.3f} acc {100 * e['train_acc']:.2f}% | "
                    f"test loss {e['test_loss']:.3f} acc {100 * e['test_acc']:.2f}% | {e['elapsed_s']:.0f}s")
            (self.bar.write if self.bar is not None else print)(line, file=sys.stderr)
        elif kind == "phase" and e.get("phase") == "final_evaluation":
            line = f"final evaluation on {e['test_images']:,} test images..."
            (self.bar.write if self.bar is not None else print)(line, file=sys.stderr)
        elif kind == "end":
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            if e.get("status") != "failed":  # a failure is printed once, as "error: ...", by cmd_train
                print(e["message"], file=sys.stderr)


def cmd_train(args) -> int:
    from resnet_demo.training.sources import BUILTIN, plan
    from resnet_demo.training.train import TrainingError, train

    cfg = TrainConfig.from_namespace(args, command="python -m resnet_demo " + shlex.join(sys.argv[1:]))
    if not args.ignore_memory_limit:
        _check_memory(cfg)
    stop = {"requested": False}

    def on_signal(signum, _frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print(f"\nstop requested ({signal.Signals(signum).name}); saving a checkpoint after this step...",
              file=sys.stderr)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    data = plan(args.data_dir, args.preset, args.subset)
    if data.kind == BUILTIN:
        print(data.message, file=sys.stderr)
    try:
        train(cfg, ProgressPrinter(args.quiet), should_stop=lambda: stop["requested"])
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


class TeachProgress:
    """Draws a teach's events: one line at the start, a bar over the steps (with the latest held-out score), and
    the end's message; with two runs (--compare) each line names its run."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar = None
        self.held: float | None = None

    def __call__(self, e: dict) -> None:
        from tqdm import tqdm

        kind, run = e["type"], f"[{e['run']}] " if e.get("run") else ""
        if kind == "start":
            start = "random weights" if e["from_scratch"] else e["start"]
            print(f"{run}teaching {e['label']} ({e['params']:,} params, from {start}) {len(e['classes'])} classes: "
                  f"{e['train_images']} images to learn from, {e['holdout_images']} held out to test on; "
                  f"{e['total_steps']} steps of {e['batch_size']}, {e['precision']}", file=sys.stderr)
            self.held = None
            if not self.quiet:
                self.bar = tqdm(total=e["total_steps"], unit="step", dynamic_ncols=True, file=sys.stderr)
        elif kind == "step" and self.bar is not None:
            self.bar.update(e["step"] - self.bar.n)
            held = {} if self.held is None else {"held_out": f"{100 * self.held:.0f}%"}
            self.bar.set_postfix(loss=f"{e['loss']:.3f}", **held)
        elif kind == "eval":
            self.held = e["holdout_accuracy"]
        elif kind == "end":
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            print(f"{run}{e['message']}", file=sys.stderr)


def _teach_images(args):
    """(Split, thumbnails or None, notes) from the folder, or from a project file."""
    from resnet_demo.data.folder import read_image_folder
    from resnet_demo.data.images import THUMB_SIDE
    from resnet_demo.store.project import load_project

    source = Path(args.folder)
    if source.is_file():
        project = load_project(source)
        return project.split(), project.thumbnails, []
    from tqdm import tqdm

    with tqdm(unit="image", desc="reading images", dynamic_ncols=True, file=sys.stderr,
              disable=args.quiet) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        found = read_image_folder(source, args.max_per_class, THUMB_SIDE if args.project else None, progress)
    return found.split, found.thumbnails, found.notes


def _check_teach_out(out: Path) -> None:
    """Refuse an --out that is a file or holds a training run: a teach must not overwrite a run's model."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    metrics = out / "metrics.json"
    try:
        taught = "taught_from" in json.loads(metrics.read_text()) if metrics.is_file() else True
    except (OSError, ValueError, TypeError):
        taught = False
    if not taught or (out / "events.jsonl").exists() or (out / "checkpoint.safetensors").exists():
        raise ValueError(f"--out {out} holds a training run; teach into another folder")


def cmd_teach(args) -> int:
    from resnet_demo.training.teach import TeachConfig, save_result, teach, teach_both

    out = Path(args.out)
    _check_teach_out(out)
    cfg = TeachConfig(start=args.start, depth=args.depth, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      holdout=args.holdout, seed=args.seed).validate()
    data, thumbnails, notes = _teach_images(args)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    stop = {"requested": False}

    def on_signal(signum, _frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print(f"\nstop requested ({signal.Signals(signum).name})", file=sys.stderr)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    printer, should_stop = TeachProgress(args.quiet), lambda: stop["requested"]
    if args.compare and not cfg.from_scratch:
        results = teach_both(data, cfg, printer, should_stop)
    else:
        results = {"taught": teach(data, cfg, printer, should_stop)}
    result = next(iter(results.values()))
    if stop["requested"] or any(r.status != "completed" for r in results.values()):
        print("stopped: nothing was written", file=sys.stderr)
        return 130
    if "scratch" in results:
        result.record["compare"] = {"from_scratch_holdout_accuracy": results["scratch"].accuracy,
                                    "from_scratch_wall_time_s": results["scratch"].record["wall_time_s"]}
    record = save_result(result, out)
    if args.project:
        _save_teach_project(args.project, data, thumbnails, result, record)
    _report_teach(args, out, record)
    return 0


def _save_teach_project(path: str, data, thumbnails, result, record: dict) -> None:
    from resnet_demo.store.project import Project, save_project
    from resnet_demo.training.teach import result_bytes

    save_project(path, Project(data.classes, data.images, data.labels, thumbnails, result_bytes(result), record))
    print(f"saved the project (classes, images, model) to {path}", file=sys.stderr)


def _report_teach(args, out: Path, record: dict) -> None:
    if args.json:
        print(json.dumps(record))
        return
    acc = record["holdout_accuracy"]
    line = ("nothing held out, so no accuracy to report (--holdout 0)" if acc is None else
            f"held-out accuracy: {100 * acc:.1f}% on {record['holdout_images']} images "
            f"({', '.join(f'{c} {100 * a:.0f}%' for c, a in record['per_class'].items() if a is not None)})")
    print(line)
    scratch = record.get("compare", {}).get("from_scratch_holdout_accuracy")
    if scratch is not None:
        print(f"from random weights instead of {record['taught_from']}: {100 * scratch:.1f}%")
    print(f"wrote {out / 'model.safetensors'} and {out / 'metrics.json'}; try it with: "
          f"python -m resnet_demo predict IMAGE --model {shlex.quote(str(out / 'model.safetensors'))}")


def _check_memory(cfg: TrainConfig) -> None:
    """Refuse a run that would not fit before it reads the data: past the machine's memory it would grow until the
    kernel kills it, or something beside it."""
    import os

    from resnet_demo.training.budget import TooBig, check

    try:
        check(cfg, world_size=int(os.environ.get("WORLD_SIZE", "1")))
    except TooBig as e:
        raise ValueError(f"{e} (To start anyway, pass --ignore-memory-limit.)") from None


def cmd_evaluate(args) -> int:
    from resnet_demo.base.device import resolve_device
    from resnet_demo.store.evaluate import evaluate
    from resnet_demo.store.registry import resolve

    entry = resolve(args.weights)
    device = resolve_device(args.device)
    model = entry.load(device)
    test, note, kind = _evaluation_images(args, entry)
    result = evaluate(model, test, device, flip_tta=args.flip_tta)
    result.pop("probs")
    result["model"] = entry.name
    result["data"] = kind
    if args.json:
        print(json.dumps(result))
        if note:
            print(f"note: {note}", file=sys.stderr)
        return 0
    flip = f"; flip-TTA {100 * result['accuracy_flip_tta']:.2f}%" if args.flip_tta else ""
    print(f"{entry.label}: test accuracy {100 * result['accuracy']:.2f}% (error {100 - 100 * result['accuracy']:.2f}%) "
          f"on {result['n']:,} images{flip}")
    if note:
        print(f"  note: {note}")
    for name, acc in result["per_class"].items():
        print(f"  {name:>10}: " + ("no images" if acc is None else f"{100 * acc:.1f}%"))
    return 0


def _evaluation_images(args, entry):
    """(test split labelled with the model's classes, a note or None, "full" | "builtin" | "cifar10-classes" |
    "folder"): CIFAR-10's test set for a CIFAR-10 model, the test images of its classes for a model taught some of
    CIFAR-10's classes, or --images for any model."""
    from resnet_demo.data.cifar import select_classes
    from resnet_demo.nets.paper import CLASSES
    from resnet_demo.training.sources import load_test_set

    classes = entry.classes
    if args.images:
        return _folder_test_set(args.images, classes), None, "folder"
    if not entry.is_cifar10 and not set(classes) <= set(CLASSES):
        raise ValueError(f"{entry.label} knows classes of its own, not CIFAR-10's; evaluate it on your images with "
                         f"--images DIR (one subfolder per class, named as its classes)")
    test, note = load_test_set(args.data_dir)
    if entry.is_cifar10:
        return test, note, "builtin" if note else "full"
    note = "; ".join(filter(None, [note, f"only the test images of its {len(classes)} classes"]))
    return select_classes(test, classes), note, "cifar10-classes"


def _folder_test_set(folder: str, classes: tuple[str, ...]):
    """A folder's images relabelled as the model's classes (folder names matched ignoring case)."""
    import numpy as np

    from resnet_demo.data.cifar import Split
    from resnet_demo.data.folder import read_image_folder

    found = read_image_folder(folder).split
    index = {c.casefold(): i for i, c in enumerate(classes)}
    unknown = [c for c in found.classes if c.casefold() not in index]
    if unknown:
        raise ValueError(f"the folder has class {unknown[0]!r}, which the model does not know; its classes are "
                         f"{', '.join(classes)}")
    mapping = np.array([index[c.casefold()] for c in found.classes], np.int64)
    return Split(found.images, mapping[found.labels], classes)


def cmd_predict(args) -> int:
    from resnet_demo.data.images import ImageError, load_input
    from resnet_demo.nets.inference import probabilities, top_k
    from resnet_demo.store.registry import default_model, model_label, resolve

    entry = resolve(args.model) if args.model else default_model()
    model = entry.load()
    if not args.json:  # the app's picker names it the same way, so the same photo's numbers can be matched
        print(f"model: {entry.name} ({model_label(entry)})" + ("" if args.model else ", the default"))
    failed = 0
    for path in args.images:
        try:
            x, _, _ = load_input(path, name=path)
            record = {"file": path, "model": entry.name,
                      "top": top_k(probabilities(model, x)[0], args.top, model.classes)}
            for t in record["top"]:
                t.pop("index")
        except ImageError as e:
            failed += 1
            record = {"file": path, "model": entry.name, "error": str(e)}
        if args.json:
            print(json.dumps(record), flush=True)
        elif "error" in record:
            print(f"{path}: error: {record['error']}")
        else:
            print(f"{path}: " + ", ".join(f"{t['label']} {100 * t['prob']:.1f}%" for t in record["top"]))
    return 1 if failed else 0


def cmd_models(args) -> int:
    from resnet_demo.store.registry import default_model, list_models, retired_models

    every, retired = list_models(include_chance=True), retired_models()
    if args.json:
        print(json.dumps([{"name": m.name, "label": m.label, "source": m.source, **m.arch.to_dict(),
                           "classes": list(m.classes),
                           "test_accuracy": m.test_accuracy, "file": m.weights and str(m.weights),
                           "at_chance_level": m.at_chance_level} for m in every + retired]))
        return 0
    models = [m for m in every if not m.at_chance_level]
    if not models:
        print("no models yet (weights/manifest.json is empty and runs/ holds no finished run above chance level)")
    default = default_model(models).name if models else None
    for m in every:
        acc = f"{100 * m.test_accuracy:.2f}%" if m.test_accuracy is not None else "-"
        note = (" (the default)" if m.name == default else
                " (chance level: not offered by the app, nor as the default)" if m.at_chance_level else "")
        print(f"{m.name:<24} {m.label:<30} {m.source:<8} test acc {acc}{note}")
    for m in retired:
        print(f"{m.name:<24} {m.label:<30} {m.source:<8} history only, for Fig. 6 "
              f"(retired for {m.record['retired']['for']})")
    return 0


def cmd_download(args) -> int:
    from tqdm import tqdm

    from resnet_demo.data.cifar import DataError, candidate_dirs, find_cifar10, offline
    from resnet_demo.data.download import URL, download_cifar10, offline_help

    found = find_cifar10(args.data_dir)
    if found is not None:
        print(f"CIFAR-10 is already in {found}; nothing to download")
        return 0
    dest = candidate_dirs(args.data_dir)[0]
    if offline():  # say so before a progress bar that would never move
        raise DataError(f"downloads are switched off here (RESNET_DEMO_OFFLINE=1). {offline_help(dest)}")
    print(f"downloading CIFAR-10 from {URL} into {dest}", file=sys.stderr)
    with tqdm(unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True, file=sys.stderr) as bar:
        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            folder = download_cifar10(dest, progress)
        except DataError as e:
            raise DataError(f"{e} {offline_help(dest)}") from None
    print(f"CIFAR-10 is in {folder}: training and evaluation now use the full set")
    return 0


def _weights_size(size: int, if_over: str = "") -> str:
    """The budget sentence that ship and retire end with (with `if_over` appended when over it)."""
    from resnet_demo.store.ship import BUDGET_BYTES

    return (f"weights/ now holds {size / 1e6:.1f} MB of its {BUDGET_BYTES / 1e6:.0f} MB budget"
            + (if_over if size > BUDGET_BYTES else ""))


def cmd_ship(args) -> int:
    from resnet_demo.store.ship import ship_run, size_bytes

    record = ship_run(Path(args.run), args.name, fp16=args.fp16, data_dir=args.data_dir,
                      download=False if args.no_download else None)
    print(f"shipped {record['name']}: test accuracy {100 * record['test_accuracy']:.2f}% -> weights/{record['file']}")
    print(_weights_size(size_bytes(), ": over it, so ship with --fp16 or remove a superseded model"))
    return 0


def cmd_retire(args) -> int:
    from resnet_demo.store.ship import retire_model, size_bytes

    before = size_bytes()
    record = retire_model(args.name, args.successor)
    after = size_bytes()
    print(f"retired {args.name} for {args.successor}: weights/{record['retired']['file']} removed, "
          f"history {record.get('history')} kept; {_weights_size(after)} ({(before - after) / 1e6:.1f} MB freed)")
    return 0


def cmd_export(args) -> int:
    from resnet_demo.base.storage import atomic_write_bytes, sha256_bytes
    from resnet_demo.store.export import export_bytes, filename
    from resnet_demo.store.registry import resolve

    entry = resolve(args.name)
    data = export_bytes(entry, args.format)
    out = Path(args.out or filename(entry, args.format))
    atomic_write_bytes(out, data)
    print(f"exported {entry.label} ({entry.name}) to {out}: {args.format}, {len(data) / 1e6:.1f} MB, "
          f"sha256 {sha256_bytes(data)[:16]}")
    return 0


COMMANDS = {"info": cmd_info, "train": cmd_train, "teach": cmd_teach, "evaluate": cmd_evaluate,
            "predict": cmd_predict, "models": cmd_models, "download": cmd_download, "ship": cmd_ship,
            "retire": cmd_retire, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from resnet_demo.base.storage import StorageError
    from resnet_demo.data.cifar import DataError
    from resnet_demo.store.weights import WeightsError

    try:
        return COMMANDS[args.command](args)
    except (DataError, WeightsError, StorageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
