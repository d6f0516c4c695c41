"""The settings of one training run, declared once.

Each field of TrainConfig carries its own help, its check and its part in a resume, and everything else is
made from those declarations: the `train` command's options, the checks a settings form or a job runs before
starting anything, the argument list a background job is launched with, the run's config.json, and what a
checkpoint records so that a resume can be checked against it. A new setting is one new field here.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field, fields, replace

from resnet_demo.base.device import DEVICE_NAMES, PRECISIONS, check_device_name
from resnet_demo.nets.model import Arch
from resnet_demo.nets.paper import PRESET_DEPTHS, blocks_per_stage
from resnet_demo.training.graph_step import STEP_CHOICES
from resnet_demo.training.recipes import RECIPES

# kind: "run": what the run is (the Train page sets these, a job's argument list carries them, a resume repeats
#       them); "io": where this process reads and writes and how it was asked to; "record": written down only.
# resume: "same": a resume must keep it; "schedule": with the step it fixes the point in the lr schedule, so a
#       resume keeps the checkpoint's value, which it takes when the setting is left open.


def _setting(default, help: str, *, kind: str = "run", parse=str, check=None, choices=None, resume=None,
             flag: str | None = None, metavar: str | None = None):
    return field(default=default, metadata=dict(help=help, kind=kind, parse=parse, check=check, choices=choices,
                                                resume=resume, flag=flag, metavar=metavar))


# The checks say what is wrong after the setting's name ("batch size must be ...").

def _positive(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a positive whole number, got {value!r}")


def _non_negative(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a whole number, 0 or more, got {value!r}")


def _positive_number(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be a positive number, got {value!r}")


def _minutes(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"must be a number of minutes, 0 or more, got {value!r}")


@dataclass
class TrainConfig:
    depth: int = _setting(20, f"6n+2; the paper's: {', '.join(map(str, PRESET_DEPTHS))}", parse=int,
                          check=blocks_per_stage, resume="same")
    plain: bool = _setting(False, "the plain twin: same layers, no shortcuts (Fig. 6)", resume="same")
    shortcut: str = _setting("A", "A: zero-padded identity (paper); B: 1x1 projection", choices=("A", "B"),
                             resume="same")
    preset: str = _setting("classroom", "the training recipe (recipes.py)", choices=tuple(RECIPES), resume="same")
    epochs: int | None = _setting(None, "the preset's unless given", parse=int, check=_positive, resume="schedule")
    batch_size: int | None = _setting(None, "global batch; the lr is scaled linearly with it", parse=int,
                                      check=_positive, resume="schedule")
    lr: float | None = _setting(None, "override the preset's (peak) learning rate", parse=float,
                                check=_positive_number, resume="schedule")
    subset: int | None = _setting(None, "train on a stratified subset of N images", parse=int, check=_positive,
                                  resume="same", metavar="N")
    test_subset: int | None = _setting(None, "per-epoch test curve on N test images (final eval uses all)",
                                       parse=int, check=_positive, metavar="N")
    eval_every: int = _setting(1, "evaluate the per-epoch test curve after every N epochs (0: only the finished "
                                  "run's final evaluation); it does not change the training", parse=int,
                               check=_non_negative, metavar="N")
    device: str = _setting("auto", f"{DEVICE_NAMES} (auto: CUDA when present)", check=check_device_name)
    seed: int = _setting(0, "seeds the weights, the subset and the batches", parse=int, check=_non_negative,
                         resume="same")
    compile: bool = _setting(False, "torch.compile the model: slow start; on the CPU faster steps in fp32, slower in "
                                    "bf16; on a GPU the compiled model inside the CUDA graph step (fused "
                                    "BatchNorm/ReLU/add; not yet measured on a GPU)")
    step: str = _setting("auto", "auto: on a GPU the whole training step replayed as one CUDA graph (eager if capture "
                                 "fails, or under DDP), eager on the CPU", choices=STEP_CHOICES)
    precision: str = _setting("auto", "auto: bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), "
                                      "else fp32", choices=PRECISIONS)
    checkpoint_minutes: float = _setting(
        10.0, "also checkpoint mid-epoch every M minutes, so a killed run loses at most that (0: only after each "
              "epoch; default %(default)g)", parse=float, check=_minutes, metavar="M")
    flip_tta: bool = _setting(False, "also report flip test-time augmentation (separately)")
    data_dir: str | None = _setting(None, "folder with train.npz/test.npz or cifar-10-batches-py", kind="io")
    download: bool | None = _setting(None, "never download the data set", kind="io", flag="--no-download")
    out: str = _setting("runs/latest", "run folder: checkpoint, history, metrics", kind="io")
    resume: bool = _setting(False, "continue from the checkpoint in --out", kind="io")
    command: str | None = _setting(None, "the command line, for the record", kind="record")

    @property
    def arch(self) -> Arch:
        return Arch(self.depth, self.plain, self.shortcut)

    # ------------------------------------------------------------ checks

    def validate(self) -> Arch:
        """ValueError, saying which setting and why, for anything a run would refuse; else the architecture."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None or f.default is not None:
                _check(f, value)
        batch = self.batch_size or RECIPES[self.preset].batch_size
        if self.subset is not None and self.subset < batch:
            raise ValueError(f"a subset of {self.subset} images is smaller than one batch ({batch}); "
                             f"use at least {batch} images")
        return self.arch

    # ------------------------------------------------------------ command line

    @classmethod
    def add_arguments(cls, parser, only: tuple[str, ...] | None = None) -> None:
        """Every setting (or those named in `only`) as an option of `parser`, with its help and check."""
        for f in _cli_fields():
            if only is not None and f.name not in only:
                continue
            meta = f.metadata
            if f.type in ("bool", "bool | None"):  # a switch: --plain sets True; --no-download sets False
                parser.add_argument(_flag(f), dest=f.name, action="store_const", const=f.default is not None,
                                    default=f.default, help=meta["help"])
            else:
                parser.add_argument(_flag(f), dest=f.name, type=_arg_type(f), default=f.default,
                                    choices=meta["choices"], metavar=meta["metavar"], help=meta["help"])

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace, **extra) -> TrainConfig:
        return cls(**{f.name: getattr(ns, f.name) for f in _cli_fields()}, **extra)

    @classmethod
    def from_args(cls, argv: list[str]) -> TrainConfig:
        """The settings an argument list asks for; ValueError for one that `train` would refuse."""
        parser = _RaisingParser(add_help=False)
        cls.add_arguments(parser)
        return cls.from_namespace(parser.parse_args(argv))

    def to_args(self, run_only: bool = False) -> list[str]:
        """The options that reproduce these settings (defaults left out); run_only: the run settings alone."""
        args: list[str] = []
        for f in _cli_fields():
            value = getattr(self, f.name)
            if value == f.default or (run_only and f.metadata["kind"] != "run"):
                continue
            args += [_flag(f)] if isinstance(value, bool) else [_flag(f), str(value)]
        return args

    # ------------------------------------------------------------ records

    def to_json(self) -> dict:
        """The settings as the run folder's config.json holds them."""
        return asdict(self)

    def run_settings(self) -> dict:
        """The run settings alone (what a job's job.json records), without where it reads and writes."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["kind"] == "run"}

    @classmethod
    def from_json(cls, record: dict) -> TrainConfig:
        """Settings from a config.json or a job.json's settings; keys this version does not know are ignored."""
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})

    def checkpoint_record(self, recipe) -> dict:
        """What a checkpoint records of the run: the settings a resume must keep, and the resolved schedule."""
        return {**{k: getattr(self, k) for k in _resume_keys("same")},
                **{k: getattr(recipe, k) for k in _resume_keys("schedule")}}

    def with_schedule_of(self, saved: dict) -> TrainConfig:
        """On --resume, the schedule settings left open taken from the checkpoint's record.

        So `--resume` alone continues a 100-epoch run as it was: without it the preset's 40 epochs would put the
        step at another point of a shorter schedule (and "finish" a checkpoint past epoch 40 at once).
        """
        return replace(self, **{k: saved[k] for k in _resume_keys("schedule")
                                if getattr(self, k) is None and saved.get(k) is not None})

    def check_resume(self, saved: dict, recipe) -> None:
        """ValueError if resuming the checkpoint whose record is `saved` with these settings would change the run."""
        for key in _resume_keys("same"):
            if key in saved and saved[key] != getattr(self, key):
                raise ValueError(f"--resume: the checkpoint in {self.out} was written with {key}={saved[key]!r}, "
                                 f"not {getattr(self, key)!r}; resume with the same settings or use another --out")
        for key in _resume_keys("schedule"):
            if saved.get(key) is not None and not math.isclose(saved[key], getattr(recipe, key)):
                raise ValueError(f"--resume: the checkpoint in {self.out} was written with {key}={saved[key]!r}, "
                                 f"not {getattr(recipe, key)!r}; leave {_flag(_field(key))} out to keep the "
                                 f"checkpoint's, or use another --out")


def _field(name: str):
    return next(f for f in fields(TrainConfig) if f.name == name)


def _cli_fields() -> list:
    return [f for f in fields(TrainConfig) if f.metadata["kind"] != "record"]


def _resume_keys(role: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields(TrainConfig) if f.metadata["resume"] == role)


def _flag(f) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def _check(f, value) -> None:
    meta = f.metadata
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ValueError(f"unknown {f.name.replace('_', ' ')} {value!r}; choose one of {', '.join(meta['choices'])}")
    if meta["check"] is not None:
        try:
            meta["check"](value)
        except ValueError as e:
            message = str(e)
            named = f"{f.name.replace('_', ' ')} {message}" if message.startswith("must") else message
            raise ValueError(named) from None


def _arg_type(f):
    """The option's parser: the text converted, then checked as validate() would."""
    def parse(text: str):
        try:
            value = f.metadata["parse"](text)
        except ValueError:
            what = "a whole number" if f.metadata["parse"] is int else "a number"
            raise argparse.ArgumentTypeError(f"{_flag(f)} expects {what}, got {text!r}") from None
        if f.metadata["choices"] is None:
            try:
                _check(f, value)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        return value

    parse.__name__ = f.name
    return parse


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ValueError(message)
