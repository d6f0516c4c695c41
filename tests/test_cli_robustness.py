"""`python -m resnet_demo robustness`: its figures against an FGSM written out here in plain torch, the built-in
test subset when the full set is missing, a table that resumes, and a clear message for every bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from resnet_demo.cli import main
from resnet_demo.nets.paper import MEAN, STD


def plain_fgsm_accuracy(model, images: np.ndarray, labels: np.ndarray, eps: float) -> int:
    """How many stay right after x' = clip01(x + eps/255 sign(grad of the cross-entropy)), all in plain torch."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    x = torch.tensor(images).permute(0, 3, 1, 2).float() / 255
    y = torch.tensor(labels).long()
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model((x - mean) / std), y, reduction="sum"), x)
    adv = (x.detach() + eps / 255 * g.sign()).clamp(0, 1)
    with torch.no_grad():
        return int((model((adv - mean) / std).argmax(1) == y).sum())


def run_json(capsys, *args) -> tuple[list[dict], str]:
    """(one record a model, what went to stderr)."""
    assert main(["robustness", *args, "--json"]) == 0
    out, err = capsys.readouterr()
    return [json.loads(line) for line in out.splitlines()], err


def test_figures_match_an_independent_fgsm(capsys, synthetic_data_dir):
    from resnet_demo.data.cifar import load_cifar10
    from resnet_demo.store.registry import resolve

    (out,), _ = run_json(capsys, "--model", "resnet20-e100", "--eps", "1,4", "--images", "24", "--data-dir",
                         str(synthetic_data_dir))
    test = load_cifar10(synthetic_data_dir).test
    model = resolve("resnet20-e100").load()
    assert out["images"] == 24 and out["data"] == "full" and out["attack"] == "fgsm" and "steps" not in out
    for r in out["results"]:
        assert r["correct"] == plain_fgsm_accuracy(model, test.images[:24], test.labels[:24], r["eps"]), r
    assert [r["eps"] for r in out["results"]] == [1.0, 4.0]
    assert out["clean"] == plain_fgsm_accuracy(model, test.images[:24], test.labels[:24], 0.0) / 24


def test_without_the_full_set_it_uses_the_builtin_subset_and_says_so(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RESNET_DEMO_DATA", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    (out,), err = run_json(capsys, "--model", "resnet20-e100", "--attack", "pgd", "--steps", "2", "--eps", "2",
                           "--images", "8")
    assert out["data"] == "builtin" and out["images"] == 8 and out["steps"] == 2 and out["step_fraction"] == 0.25
    assert "built-in 1,000-image test subset" in err
    assert main(["robustness", "--model", "resnet20-e100", "--images", "1001"]) == 1
    err = capsys.readouterr().err
    assert "error: --images 1,001 is more than the 1,000 test images there are in the built-in subset" in err


def test_the_table_is_written_cell_by_cell_and_resumes(capsys, synthetic_data_dir, tmp_path):
    out_file = tmp_path / "robustness.json"
    args = ["--model", "resnet20-e100", "--eps", "2", "--images", "10", "--data-dir", str(synthetic_data_dir),
            "--out", str(out_file)]
    assert main(["robustness", *args]) == 0
    first = capsys.readouterr().out
    assert "eps =    2/255" in first and "recorded in" in first
    table = json.loads(out_file.read_text())
    assert [(r["attack"], r["eps"]) for r in table["results"]] == [("none", 0.0), ("fgsm", 2.0)]
    from resnet_demo.base.storage import sha256_file
    from resnet_demo.store.registry import resolve

    assert table["models"]["resnet20-e100"]["sha256"] == sha256_file(resolve("resnet20-e100").weights)
    assert list(table["test_images"]) == ["10"] and table["test_images"]["10"]["data"] == "full"
    assert table["commands"][0].startswith("python -m resnet_demo robustness --model resnet20-e100 --attack fgsm")
    assert "--data-dir DIR" in table["commands"][0] and str(synthetic_data_dir) not in out_file.read_text()
    assert main(["robustness", *args]) == 0
    assert "(recorded earlier)" in capsys.readouterr().out  # not measured again
    assert json.loads(out_file.read_text())["results"] == table["results"]


@pytest.mark.parametrize("args,message", [
    (["--eps", "17"], "each eps must be from 0 to 16"),
    (["--eps", "-1"], "each eps must be from 0 to 16"),
    (["--eps", "abc"], "expected numbers separated by commas"),
    (["--eps", "nan"], "each eps must be from 0 to 16"),
    (["--steps", "0"], "expected a positive integer"),
    (["--steps", "x"], "expected a positive integer"),
    (["--attack", "cw"], "invalid choice"),
    (["--images", "0"], "expected a positive integer"),
])
def test_bad_arguments_are_refused_by_the_parser(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["robustness", "--model", "resnet20-e100", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["--model", "resnet21"], "no model named 'resnet21'"),
    (["--model", ","], "--model needs a model name"),
    (["--attack", "pgd", "--steps", "101"], "PGD needs 1 to 100 steps"),
    (["--attack", "pgd", "--step-fraction", "0"], "fraction of ε above 0 and at most 1"),
    (["--attack", "pgd", "--step-fraction", "2"], "fraction of ε above 0 and at most 1"),
])
def test_bad_settings_get_one_error_line(capsys, args, message):
    assert main(["robustness", *args, "--images", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


@pytest.mark.slow
@pytest.mark.realdata
def test_the_shipped_table_is_reproduced(capsys, real_data_dir):
    """One cell of weights/robustness.json measured again from scratch: the same count of images, give or take a
    few whose gradient sign is a matter of rounding (the definition promises the figures to within 1 point)."""
    from resnet_demo.interpret.robustness import read_table

    table = read_table()
    assert table is not None, "weights/robustness.json is missing"
    row = next(r for r in table["results"] if r["model"] == "resnet20-e100" and r["attack"] == "fgsm"
               and r["eps"] == 2.0)
    (out,), _ = run_json(capsys, "--model", "resnet20-e100", "--eps", "2", "--images", str(row["images"]),
                         "--data-dir", str(real_data_dir))
    assert abs(out["results"][0]["correct"] - row["correct"]) <= row["images"] // 100
