"""`python -m resnet_demo train` as a person runs it: failures are one "error:" line and a non-zero exit.

One test runs the command in a new process, as a person does (the entry point, the exit status, stderr); the
others call `cli.main`, the function that `python -m resnet_demo` hands its arguments to and whose return value
is its exit status (resnet_demo/__main__.py: `raise SystemExit(main())`), in this process: the same code and the
same output, without a new interpreter importing torch for each (several seconds each on a loaded 2-core
machine). An exception that escaped main() would fail the test itself, so "no traceback" still holds.
tests/test_readme.py runs the README's commands as new processes too.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet_demo import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def person(tmp_path, monkeypatch):
    """A new user's folder as the current one: no data set anywhere (no RESNET_DEMO_DATA, no ./data) and no
    internet (conftest sets RESNET_DEMO_OFFLINE). `cli.main(["train", ...])` installs SIGINT/SIGTERM handlers, as
    the command does for Ctrl-C; they are put back afterwards so that pytest's own Ctrl-C still works."""
    monkeypatch.delenv("RESNET_DEMO_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield tmp_path
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_train_without_data_says_once_how_to_get_it_and_leaves_no_run(tmp_path):
    # The fast preset on all 50,000 images needs the full set; the built-in subset would not be honest for it.
    # A new process, as a new user runs it: no data set anywhere, no internet, from a folder of their own.
    env = {k: v for k, v in os.environ.items() if k != "RESNET_DEMO_DATA"}
    proc = subprocess.run([sys.executable, "-m", "resnet_demo", "train", "--depth", "8", "--preset", "fast",
                           "--device", "cpu", "--data-dir", str(tmp_path / "nowhere"), "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**env, "PYTHONPATH": str(ROOT), "RESNET_DEMO_OFFLINE": "1"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1 and proc.stderr.count("was not found") == 1, proc.stderr
    assert "error: The full CIFAR-10 was not found (looked in: " in proc.stderr
    assert str(tmp_path / "nowhere") in proc.stderr and "`python -m resnet_demo download`" in proc.stderr
    assert "../" not in proc.stderr  # no folder of the machine it was made on
    assert not (tmp_path / "runs").exists(), "a run that never started left a folder behind"


def test_a_failed_run_prints_its_error_once(person, synthetic_data_dir, capsys):
    code = cli.main(["train", "--depth", "8", "--epochs", "1", "--batch-size", "64", "--lr", "1e12",
                     "--test-subset", "10", "--device", "cpu", "--data-dir", str(synthetic_data_dir),
                     "--out", str(person / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.count("diverged") == 1 and err.count("error:") == 1, err


def test_evaluate_without_the_full_set_uses_the_builtin_test_subset(person, capsys):
    assert cli.main(["evaluate", "--weights", "resnet20-e100", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "on 1,000 images" in out and "built-in 1,000-image test subset, not the full 10,000" in out
    assert cli.main(["evaluate", "--weights", "resnet20-e100", "--device", "cpu", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["n"] == 1000 and result["data"] == "builtin" and result["accuracy"] > 0.85
    assert "note: evaluated on the built-in" in captured.err


def test_train_refusals_are_clear(person, synthetic_data_dir, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--depth", "9"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "6n+2" in err and "nearest valid depths: 8 or 14" in err
    if not torch.cuda.is_available():
        code = cli.main(["train", "--depth", "8", "--device", "cuda", "--data-dir", str(synthetic_data_dir),
                         "--out", str(person / "r")])
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err
        assert "error: --device cuda was asked for, but PyTorch sees no CUDA GPU" in err


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--batch-size", "-1"], ["--preset", "imagenet"],
                                  ["--checkpoint-minutes", "-1"], ["--checkpoint-minutes", "nan"]])
def test_bad_numbers_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", *argv])
    assert e.value.code == 2 and "error:" in capsys.readouterr().err


def test_progress_header_names_device_and_precision(capsys):
    # The first line a user sees says what the run will cost: device, steps, batch, and the precision it trains in.
    printer = cli.ProgressPrinter(quiet=True)
    start = {"type": "start", "label": "ResNet-20", "params": 269_722, "device": "AMD EPYC, 2 threads", "epochs": 3,
             "steps_per_epoch": 390, "batch_size": 128, "train_images": 50_000, "total_steps": 1170,
             "resumed_from_step": 120, "config": {"precision_used": "bf16 autocast"}}
    printer(start)
    assert capsys.readouterr().err.strip() == (
        "ResNet-20 (269,722 params) on AMD EPYC, 2 threads: 3 epochs x 390 steps, "
        "batch 128, 50,000 train images, bf16 autocast, resuming at step 120")
    printer({**start, "config": {}, "resumed_from_step": None})  # an older event file without the field
    assert capsys.readouterr().err.strip().endswith("50,000 train images")


def _chance_level_run(tiny_run: Path, runs: Path, name: str = "guess") -> Path:
    """A copy of the tiny run recorded at 10 % test accuracy: what a run stopped after a few steps scores."""
    import json
    import shutil

    out = shutil.copytree(tiny_run, runs / name)
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**metrics, "test_accuracy": 0.1}))
    return out


def test_predict_names_the_model_it_used(tmp_path, tiny_weights_dir, tiny_run, monkeypatch, capsys):
    # Issue 28: the CLI and the app defaulted to different models and the CLI's output named none, so one photo
    # got two sets of numbers with no explanation. Both now use registry.default_model and say which they used.
    import json

    from PIL import Image

    from resnet_demo.store.registry import model_label, shipped_models

    Image.new("RGB", (40, 30), (200, 40, 40)).save(tmp_path / "red.png")
    _chance_level_run(tiny_run, tmp_path / "runs")  # at chance level: never the default, however it ranks
    monkeypatch.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    monkeypatch.setenv("RESNET_DEMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    (entry,) = shipped_models(tiny_weights_dir)
    assert cli.main(["predict", "red.png"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"model: resnet8 ({model_label(entry)}), the default" and lines[1].startswith("red.png: ")
    assert cli.main(["predict", "red.png", "missing.png", "--json", "--model", "run:guess"]) == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["file"], r["model"]) for r in records] == [("red.png", "run:guess"), ("missing.png", "run:guess")]
    assert len(records[0]["top"]) == 5 and "error" in records[1]


def test_chance_level_runs_are_marked_and_never_offered(tmp_path, tiny_weights_dir, tiny_run, monkeypatch, capsys):
    import json

    from resnet_demo.store.registry import list_models, resolve

    _chance_level_run(tiny_run, tmp_path / "runs")
    monkeypatch.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    monkeypatch.setenv("RESNET_DEMO_RUNS", str(tmp_path / "runs"))
    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["resnet8", "run:guess"]
    assert lines[0].endswith("(the default)") and "chance level: not offered" in lines[1]
    assert cli.main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["name"], m["at_chance_level"]) for m in listed] == [("resnet8", False), ("run:guess", True)]
    assert [m.name for m in list_models()] == ["resnet8"]
    assert [m.name for m in list_models(include_chance=True)] == ["resnet8", "run:guess"]
    assert resolve("run:guess").at_chance_level  # still there by name, for the CLI's evaluate and predict


def test_progress_says_when_the_final_evaluation_starts(capsys):
    cli.ProgressPrinter(quiet=True)({"type": "phase", "phase": "final_evaluation", "step": 1, "test_images": 10_000})
    assert capsys.readouterr().err.strip() == "final evaluation on 10,000 test images..."
