"""TrainConfig declares each run setting once: its option, its check, its argument-list and JSON forms."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from resnet_demo.cli import build_parser
from resnet_demo.training.config import TrainConfig

# Every setting away from its default, so that a conversion that drops or garbles one is seen.
EVERYTHING = TrainConfig(depth=56, plain=True, shortcut="B", preset="paper", epochs=7, batch_size=96, lr=0.075,
                         subset=960, test_subset=500, eval_every=0, device="cpu", seed=3, compile=True,
                         precision="fp32", checkpoint_minutes=2.5, flip_tta=True, data_dir="some/dir", download=False,
                         out="runs/x", resume=True)


def test_the_train_command_has_an_option_for_every_setting():
    train = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    dests = {a.dest for a in train._actions} - {"help", "quiet", "ignore_memory_limit"}  # the CLI's own switches
    settings = {f.name for f in dataclasses.fields(TrainConfig)} - {"command"}
    assert dests == settings


def test_argument_lists_and_json_reproduce_the_settings():
    assert TrainConfig.from_args(EVERYTHING.to_args()) == EVERYTHING
    assert TrainConfig.from_json(EVERYTHING.to_json()) == EVERYTHING
    ns = build_parser().parse_args(["train", *EVERYTHING.to_args()])
    assert TrainConfig.from_namespace(ns) == EVERYTHING
    assert TrainConfig().to_args() == []  # the defaults need no option
    run_only = TrainConfig.from_args(EVERYTHING.to_args(run_only=True))
    assert (run_only.out, run_only.resume, run_only.data_dir, run_only.download) == ("runs/latest", False, None, None)
    assert dataclasses.replace(EVERYTHING, out="runs/latest", resume=False, data_dir=None, download=None) == run_only
    assert TrainConfig.from_json({**EVERYTHING.run_settings(), "unknown_key": 1, "recipe": {}}) == run_only


@pytest.mark.parametrize("settings, message", [
    (dict(depth=21), "depth 21 is not of the form 6n\\+2"),
    (dict(depth="20"), "depth must be an integer"),
    (dict(shortcut="C"), "unknown shortcut 'C'; choose one of A, B"),
    (dict(preset="imagenet"), "unknown preset 'imagenet'; choose one of paper, fast, table6, classroom"),
    (dict(epochs=0), "epochs must be a positive whole number, got 0"),
    (dict(batch_size=2.5), "batch size must be a positive whole number, got 2.5"),
    (dict(lr=-0.1), "lr must be a positive number"),
    (dict(subset=100, batch_size=128), "a subset of 100 images is smaller than one batch \\(128\\)"),
    (dict(subset=100), "smaller than one batch \\(256\\)"),  # the preset's batch
    (dict(precision="fp8"), "unknown precision 'fp8'; choose one of auto, bf16, fp32"),
    (dict(device="gpu"), "unsupported device 'gpu': use auto, cpu, cuda or cuda:N"),
    (dict(seed=-1), "seed must be a whole number, 0 or more"),
    (dict(checkpoint_minutes=float("nan")), "checkpoint minutes must be a number of minutes"),
    (dict(eval_every=-1), "eval every must be a whole number, 0 or more, got -1"),
])
def test_bad_settings_are_refused_with_the_settings_name(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings).validate()


@pytest.mark.parametrize("argv", [["--depth", "9"], ["--epochs", "0"], ["--lr", "x"], ["--device", "gpu"],
                                  ["--seed", "-2"], ["--test-subset", "1.5"]])
def test_the_command_line_refuses_what_validate_refuses(argv, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train", *argv])
    assert e.value.code == 2 and "error: argument " + argv[0] in capsys.readouterr().err
    with pytest.raises(ValueError):
        TrainConfig.from_args(argv)


def test_valid_settings_pass():
    assert EVERYTHING.validate().label == "Plain-56"
    assert TrainConfig(device="cuda:1", subset=256).validate().depth == 20
