"""The README is a promise: its commands run as written, and its results table says what the manifest says.

Each command in the README's code blocks is run here: the install is checked to be satisfied (with no download),
the app is served and answers, and every CLI line runs from an empty folder with no data set and no internet,
as on a new user's laptop. A README command that no test runs fails `test_every_readme_command_is_run`.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from resnet_demo.nets.paper import PUBLIC_REPRO_ERROR, TABLE6_ERROR, TABLE6_PARAMS_M
from resnet_demo.store.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MANIFEST = read_manifest(ROOT / "weights")  # the repository's own weights, whatever RESNET_DEMO_WEIGHTS says
MODELS, RETIRED = MANIFEST["models"], MANIFEST.get("retired", {})


def _commands() -> list[str]:
    """Every command in the README's bash blocks, comments dropped, `a && b` as two."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = [shlex.join(shlex.split(line, comments=True)) for block in blocks for line in block.splitlines()]
    return [part.strip() for line in lines if line for part in line.split(" '&&' ")]


COMMANDS = _commands()
COVERED = ("pip install -r requirements.txt", "streamlit run streamlit_app.py", "python -m pytest",
           "python -m resnet_demo models", "python -m resnet_demo info", "python -m resnet_demo predict",
           "python -m resnet_demo evaluate", "python -m resnet_demo download", "python -m resnet_demo export",
           "python -m resnet_demo train", "python -m resnet_demo teach")  # what the tests below run


def _command(prefix: str) -> str:
    assert prefix in COVERED
    found = [c for c in COMMANDS if c.startswith(prefix)]
    assert len(found) == 1, f"README.md should have one command starting {prefix!r}, has {found}"
    return found[0]


def test_every_readme_command_is_run():
    """A README command that none of the tests below runs is a promise nothing checks."""
    assert [c for c in COMMANDS if not c.startswith(COVERED)] == []


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    return [sys.executable, *argv[1:]] if argv[0] == "python" else argv


@pytest.fixture
def laptop(tmp_path):
    """A new user's folder and environment: no data set, no internet, the shipped weights, runs in ./runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESNET_DEMO_")}
    env.update(PYTHONPATH=str(ROOT), RESNET_DEMO_OFFLINE="1", PYTHONUNBUFFERED="1")
    return tmp_path, env


def _run(command: str, laptop, timeout: float = 300) -> subprocess.CompletedProcess:
    cwd, env = laptop
    proc = subprocess.run(_argv(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def test_the_install_command_is_satisfied_without_a_download():
    command = _command("pip install -r requirements.txt")
    proc = subprocess.run([sys.executable, "-m", *shlex.split(command), "--dry-run", "--no-index"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Would install" not in proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_run_command_serves_the_app(laptop):
    cwd, env = laptop
    port = _free_port()
    argv = [*shlex.split(_command("streamlit run streamlit_app.py")), "--server.headless", "true",
            "--server.address", "127.0.0.1", "--server.port", str(port)]
    server = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                    assert r.read() == b"ok"
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                assert time.time() < deadline, "the app did not answer within 120 s"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_test_command_is_the_one_ci_runs():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert [line for line in ci if line and not line.startswith("#")][-1] == _command("python -m pytest")


def test_models_info_and_predict(laptop):
    out = _run(_command("python -m resnet_demo models"), laptop)
    assert out.returncode == 0 and all(name in out.stdout for name in MODELS)
    out = _run(_command("python -m resnet_demo info"), laptop)
    assert out.returncode == 0 and "1,727,962 parameters" in out.stdout

    from PIL import Image

    from resnet_demo.data.testimages import read_test_images
    from resnet_demo.nets.paper import CLASSES

    command = _command("python -m resnet_demo predict")
    photo = next(a for a in shlex.split(command) if a.endswith(".jpg"))
    image = next(img for img, label in read_test_images(ROOT / "weights").values() if CLASSES[label] == "cat")
    Image.fromarray(image).resize((320, 320), Image.BICUBIC).save(laptop[0] / photo)  # the user's photo
    out = _run(command, laptop)
    assert out.returncode == 0, out.stderr
    model_line, photo_line = out.stdout.splitlines()
    assert model_line.startswith("model: ") and photo_line.startswith(f"{photo}: ") and photo_line.count("%") == 3


def test_evaluate_without_the_full_set_uses_the_builtin_test_images(laptop):
    out = _run(_command("python -m resnet_demo evaluate"), laptop)
    assert out.returncode == 0, out.stderr
    assert "on 1,000 images" in out.stdout and "built-in 1,000-image test subset" in out.stdout


def test_download_offline_says_how_to_get_the_data(laptop):
    out = _run(_command("python -m resnet_demo download"), laptop)
    assert out.returncode == 1 and out.stderr.startswith("error: ") and "cifar-10-batches-py" in out.stderr
    assert out.stderr.count("\n") == 1  # one line, and no progress bar for a download that cannot start
    assert not (laptop[0] / "data" / "cifar-10-batches-py").exists()


def test_export_writes_an_onnx_file(laptop):
    pytest.importorskip("onnx", reason="the ONNX export is an optional extra (pip install onnx onnxscript)")
    command = _command("python -m resnet_demo export")
    out = _run(command, laptop)
    assert out.returncode == 0, out.stderr
    (exported,) = laptop[0].glob("*.onnx")
    assert exported.stat().st_size > 1_000_000 and exported.name in out.stdout


def _wait_for(path: Path, ok, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and ok([json.loads(line) for line in path.read_text().splitlines() if line.strip()]):
            return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    pytest.fail(f"{path} did not show what was waited for within {timeout} s")


@pytest.mark.slow
def test_train_stop_and_resume(laptop):
    """The two train lines: a classroom run on the built-in subset, stopped with Ctrl-C, then resumed."""
    cwd, env = laptop
    start = [c for c in COMMANDS if c.startswith("python -m resnet_demo train") and "--resume" not in c]
    resume = [c for c in COMMANDS if c.startswith("python -m resnet_demo train") and "--resume" in c]
    assert len(start) == 1 and len(resume) == 1
    out = cwd / shlex.split(resume[0])[shlex.split(resume[0]).index("--out") + 1]
    for command, wanted in ((start[0], lambda ev: any(e["type"] == "step" for e in ev)),
                            (resume[0], lambda ev: ev[-1]["type"] == "step" and any(
                                e["type"] == "start" and e.get("resumed_from_step") for e in ev))):
        trainer = subprocess.Popen(_argv(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        _wait_for(out / "events.jsonl", wanted, 240, trainer)
        trainer.send_signal(signal.SIGINT)  # Ctrl-C: stop within a step, keep a checkpoint
        _, err = trainer.communicate(timeout=120)
        assert trainer.returncode == 0 and "Traceback" not in err, err[-3000:]
        assert "built-in 5,000-image subset" in err and (out / "checkpoint.safetensors").is_file()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["status"] for e in events if e["type"] == "end"] == ["stopped", "stopped"]


@pytest.mark.slow
def test_teach_a_folder_of_photos_then_predict_with_its_names(laptop):
    """The teach line as written (the shipped ResNet-20, the default steps) on a folder of three classes."""
    import numpy as np
    from PIL import Image

    cwd, _ = laptop
    command = _command("python -m resnet_demo teach")
    argv = shlex.split(command)
    photos, out = cwd / argv[3], cwd / argv[argv.index("--out") + 1]
    rng = np.random.default_rng(0)
    for c, name in enumerate(("mug", "plant", "lamp")):
        (photos / name).mkdir(parents=True)
        for i in range(6):
            colour = np.array([[220, 40, 40], [40, 180, 60], [40, 60, 220]][c])
            pixels = np.clip(colour + rng.normal(0, 30, (120, 160, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(photos / name / f"{i}.jpg")
    proc = _run(command, laptop, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out accuracy:" in proc.stdout and (out / "model.safetensors").is_file()
    proc = _run(f"python -m resnet_demo predict {photos / 'plant' / '0.jpg'} --model {out} --json", laptop)
    assert proc.returncode == 0, proc.stderr
    assert {t["label"] for t in json.loads(proc.stdout)["top"]} == {"mug", "plant", "lamp"}


# ------------------------------------------------------------------ the results table against the manifest


def _row(entry: dict, path: Path) -> list[str]:
    """The results row of this model: its network, and its recipe where one network is shipped twice."""
    label, recipe = entry["label"], f"{entry['epochs']} epochs, seed {entry['seed']}"
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (line.startswith("|") and re.fullmatch(rf"{re.escape(label)}( \(.*\))?", cells[0])
                and recipe in " ".join(cells)):
            return cells
    pytest.fail(f"{path.name} has no results row for model {label} ({recipe})")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_readme_results_row_matches_manifest(name):
    entry = MODELS[name]
    cells = _row(entry, README)
    error = f"{100 * (1 - entry['test_accuracy']):.2f} %"
    assert f"**{error}** ({100 * entry['test_accuracy']:.2f} % accuracy)" in cells, (name, cells)
    assert f"{100 * (1 - entry['test_accuracy_flip_tta']):.2f} %" in cells, (name, cells)
    if not entry["plain"]:  # Table 6 and the public reproduction live in resnet_demo.nets.paper
        depth = entry["depth"]
        assert cells[1:4] == [f"{TABLE6_PARAMS_M[depth]}M", f"{TABLE6_ERROR[depth]:.2f} %",
                              f"{PUBLIC_REPRO_ERROR[depth]:.2f} %"], (name, cells)


@pytest.mark.parametrize("name", sorted(RETIRED) or [pytest.param(None, marks=pytest.mark.skip(
    reason="no retired model in weights/manifest.json"))])
def test_results_page_keeps_the_figures_of_retired_models(name):
    # Their files left weights/, so these figures are checked against the manifest, where retire kept them.
    entry = RETIRED[name]
    figures = entry["retired"]
    cells = _row(entry, ROOT / "docs" / "RESULTS.md")
    assert f"{100 * (1 - figures['test_accuracy']):.2f} % ({100 * figures['test_accuracy']:.2f} % accuracy)" in cells
    assert f"{100 * (1 - figures['test_accuracy_flip_tta']):.2f} %" in cells, (name, cells)
