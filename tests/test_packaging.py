"""`pip install -e .` gives a `resnet-demo` command that works from any folder, and the install's pins stay those of
requirements.txt."""
from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", line)
        if m:
            out[m.group(1).lower()] = m.group(2).replace(" ", "")
    return out


def test_pyproject_pins_match_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = _pins(project["dependencies"]) | _pins(extras["onnx"]) | _pins(extras["test"])
    assert declared == _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert project["scripts"] == {"resnet-demo": "resnet_demo.cli:main"}


def test_gitignore_keeps_a_local_venv_out():
    assert ".venv/" in (ROOT / ".gitignore").read_text().split()


@pytest.mark.slow
def test_editable_install_gives_a_command_that_works_anywhere(tmp_path):
    # A fresh venv that sees this interpreter's packages (torch, pip and setuptools are not installed twice), then
    # `pip install -e .` into it.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "outer.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    proc = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                           "-e", str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RESNET_DEMO_WEIGHTS", "RESNET_DEMO_RUNS")}
    proc = subprocess.run([venv / "bin" / "resnet-demo", "models", "--json"], capture_output=True, text=True,
                          cwd=elsewhere, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    shipped = [m for m in json.loads(proc.stdout) if m["source"] == "shipped"]
    assert shipped and all(Path(m["file"]).parent == ROOT / "weights" for m in shipped)  # found beside the package
    usage = subprocess.run([venv / "bin" / "resnet-demo", "--help"], capture_output=True, text=True, cwd=elsewhere,
                           env=env, timeout=300).stdout
    assert usage.startswith("usage: resnet-demo") and "download" in usage
