"""The training guard (issue 29, item 2): a job is estimated before it starts and refused, with the reason and what
would fit, when the machine or the server's limits cannot take it; the estimate against measured peaks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet_demo.nets.model import CifarResNet, count_params
from resnet_demo.nets.paper import TABLE6_PARAMS_M
from resnet_demo.server import jobs
from resnet_demo.training import budget
from resnet_demo.training.config import TrainConfig

REPO = Path(__file__).resolve().parent.parent
GB = budget.GB
CLASSROOM = dict(depth=20, preset="classroom", subset=5000, test_subset=2000, device="cpu")  # the page's CPU default

# The trainer's peak resident memory on the CPU, measured with `python -m benchmarks.memory` (BENCHMARKS.md,
# "Training memory", a 2-core AMD EPYC, 2026-12-04): (depth, batch, training images, precision, peak bytes);
# 2,000 test images each.
MEASURED = [
    (20, 128, 5000, 'fp32', 1330573312),
    (56, 128, 5000, 'fp32', 1851076608),
    (110, 128, 5000, 'fp32', 2600771584),
    (20, 512, 5000, 'fp32', 2109661184),
    (56, 512, 5000, 'fp32', 3888173056),
    (110, 512, 5000, 'fp32', 6791114752),
    (20, 32, 5000, 'fp32', 1040977920),
    (20, 128, 50000, 'fp32', 1510178816),
    (20, 128, 5000, 'bf16', 1126400000),
    (56, 128, 5000, 'bf16', 1371156480),
    (110, 128, 5000, 'bf16', 1773002752),
    (20, 512, 5000, 'bf16', 1650307072),
    (56, 512, 5000, 'bf16', 2656243712),
    (110, 512, 5000, 'bf16', 4197113856),
    (20, 32, 5000, 'bf16', 993681408),
    (20, 128, 50000, 'bf16', 1339326464),
]
FACTOR = 1.1  # the estimate lies within [peak / FACTOR, peak * FACTOR] of every measured peak


@pytest.fixture
def laptop(monkeypatch):
    """An 8 GB machine with 6 GB free: the guard keeps 1 GB back, so 5 GB are allowed."""
    for name in (budget.ENV_MAX_GB, budget.ENV_MAX_DEPTH, budget.ENV_MAX_BATCH):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(budget, "host_memory", lambda: (6 * GB, 8 * GB))
    return monkeypatch


def test_the_counts_come_from_the_network_at_any_depth():
    for depth, plain, shortcut in ((32, False, "A"), (44, True, "A"), (26, False, "B")):
        assert budget.network_counts(depth, plain, shortcut) == budget._meta_counts(depth, plain, shortcut)
    assert budget.network_counts(56)[1] == count_params(CifarResNet(TrainConfig(depth=56).arch))
    saved, params = budget.network_counts(1202)
    assert params == 19_421_274 and round(params / 1e6, 1) == TABLE6_PARAMS_M[1202]
    assert 80e6 < saved < 100e6  # 4 saved tensors a block: ResNet-1202 keeps ~93 MB per image for its backward pass


def test_resnet1202_at_batch_4096_on_the_cpu_is_refused_with_what_would_fit(laptop):
    laptop.setenv(budget.ENV_MAX_GB, "8")
    cfg = TrainConfig(depth=1202, batch_size=4096, device="cpu")
    with pytest.raises(budget.TooBig) as e:
        budget.check(cfg)
    message = str(e.value)
    assert message.startswith("ResNet-1202 at batch 4096 on the CPU needs about ")
    needed = float(message.split("needs about ")[1].split(" GB")[0].replace(",", ""))
    assert needed > 100  # hundreds of GB: it would have grown until the machine ran out
    assert "this server allows 5.0 GB for training (the memory free now, less a safety margin)" in message
    assert "Try batch " in message and "depth " in message
    suggested = int(message.split("Try batch ")[1].split()[0])
    budget.check(TrainConfig(depth=1202, batch_size=suggested, device="cpu"))  # what it suggests does fit


def test_the_servers_memory_limit_applies_when_it_is_the_smaller(laptop):
    laptop.setenv(budget.ENV_MAX_GB, "0.5")
    with pytest.raises(budget.TooBig, match=r"allows 0.5 GB for training \(its limit for a training job\)"):
        budget.check(TrainConfig(**CLASSROOM))


def test_a_classroom_job_fits_a_laptop(laptop):
    need = budget.check(TrainConfig(**CLASSROOM))
    assert need.total < 2 * GB
    budget.check(TrainConfig(**{**CLASSROOM, "depth": 110, "subset": None, "test_subset": None}))
    assert "of the 5.0 GB this server allows" in budget.describe(need, budget.allowance("cpu"))


def test_depth_and_batch_caps(laptop):
    laptop.setenv(budget.ENV_MAX_DEPTH, "56")
    laptop.setenv(budget.ENV_MAX_BATCH, "256")
    with pytest.raises(budget.TooBig, match=r"depth 110 is more than this server allows \(56 layers at most\); "
                                            r"try depth 56"):
        budget.check(TrainConfig(**{**CLASSROOM, "depth": 110}))
    with pytest.raises(budget.TooBig, match=r"batch 512 is more than this server allows \(256 at most\)"):
        budget.check(TrainConfig(**{**CLASSROOM, "batch_size": 512}))
    budget.check(TrainConfig(**{**CLASSROOM, "depth": 56, "batch_size": 256}))


@pytest.mark.parametrize("name,value", [(budget.ENV_MAX_GB, "lots"), (budget.ENV_MAX_DEPTH, "-3"),
                                        (budget.ENV_MAX_BATCH, "12.5")])
def test_a_wrong_limit_is_named_not_ignored(laptop, name, value):
    laptop.setenv(name, value)
    with pytest.raises(ValueError, match=f"the server's setting {name} must be"):
        budget.check(TrainConfig(**CLASSROOM))


def test_on_a_gpu_the_free_gpu_memory_is_the_limit(laptop):
    laptop.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * GB, 80 * GB))
    allowed = budget.allowance("cuda")
    assert allowed.bytes == pytest.approx(0.0 * GB)  # 4 GB free less 5 % of 80 GB
    laptop.setattr(torch.cuda, "mem_get_info", lambda device=None: (40 * GB, 80 * GB))
    assert budget.allowance("cuda").bytes == pytest.approx(36 * GB)
    laptop.setenv(budget.ENV_MAX_GB, "10")
    assert budget.allowance("cuda").bytes == pytest.approx(10 * GB)
    need = budget.estimate(TrainConfig(depth=110, batch_size=128, preset="fast"), "cuda")
    assert need.device == "cuda" and need.cuda_host > 0 and need.total < 10 * GB


@pytest.mark.skipif(not MEASURED, reason="no calibration recorded")
def test_the_estimate_is_within_a_stated_factor_of_the_measured_peaks():
    ratios = []
    for depth, batch, images, precision, peak in MEASURED:
        cfg = TrainConfig(depth=depth, batch_size=batch, subset=images if images < 50_000 else None,
                          test_subset=2000, precision=precision, device="cpu")
        ratios.append(budget.estimate(cfg, "cpu").total / peak)
    assert all(1 / FACTOR <= r <= FACTOR for r in ratios), ratios


# ---------------------------------------------------------------- where the guard applies


@pytest.fixture
def runs(tmp_path, laptop):
    laptop.setenv("RESNET_DEMO_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_jobs_start_refuses_before_anything_is_written(runs):
    with pytest.raises(budget.TooBig, match="ResNet-1202 at batch 4096"):
        jobs.start(TrainConfig(depth=1202, batch_size=4096, device="cpu"), runs)
    assert jobs.active(runs) is None
    assert not runs.exists() or not any(runs.iterdir())


def test_jobs_resume_is_checked_with_the_runs_own_settings(runs, laptop):
    out = runs / "20260101-000000-resnet56"
    out.mkdir(parents=True)
    (out / jobs.JOB_FILE).write_text(json.dumps({"args": ["--depth", "56", "--batch-size", "512", "--device", "cpu"]}))
    (out / "checkpoint.safetensors").write_bytes(b"not read: the job's own arguments say the batch")
    laptop.setenv(budget.ENV_MAX_BATCH, "256")
    with pytest.raises(budget.TooBig, match="batch 512 is more than this server allows"):
        jobs.resume(out.name, runs)
    assert jobs.active(runs) is None and not (out / jobs.LOG_FILE).exists()


def _train(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet_demo", "train", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600, env=env)


@pytest.mark.slow
def test_the_cli_refuses_too_and_a_teacher_can_override(tmp_path, synthetic_data_dir):
    import os

    env = {**os.environ, budget.ENV_MAX_DEPTH: "8"}
    tiny = ["--preset", "classroom", "--epochs", "1", "--subset", "64", "--test-subset", "32", "--batch-size", "32",
            "--device", "cpu", "--data-dir", str(synthetic_data_dir), "--no-download", "--quiet"]
    refused = _train(["--depth", "20", *tiny, "--out", str(tmp_path / "a")], env)
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("error: depth 20 is more than this server allows (8 layers at most)")
    assert "pass --ignore-memory-limit" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "a").exists()
    forced = _train(["--depth", "20", *tiny, "--out", str(tmp_path / "b"), "--ignore-memory-limit"], env)
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert (tmp_path / "b" / "metrics.json").is_file()


@pytest.mark.parametrize("value, wanted", [
    (None, 3), ("", 3), (" 2 ", 2), ("16", 16), ("17", 3), ("0", 3), ("-4", 3), ("two", 3), ("1.5", 3),
])
def test_a_count_setting_is_used_in_range_and_a_bad_one_is_logged(value, wanted, caplog, monkeypatch):
    name = "RESNET_DEMO_TEST_COUNT"
    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)
    assert budget.env_count(name, default=3, most=16) == wanted
    assert (name in caplog.text) == (value is not None and bool(value.strip()) and str(wanted) != value.strip())
