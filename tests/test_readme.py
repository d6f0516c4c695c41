"""The README's results table states figures by hand; it must say what weights/manifest.json and paper.py say."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from resnet_demo.paper import PUBLIC_REPRO_ERROR, TABLE6_ERROR, TABLE6_PARAMS_M
from resnet_demo.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = read_manifest(ROOT / "weights")  # the repository's own weights, whatever RESNET_DEMO_WEIGHTS says
MODELS, RETIRED = MANIFEST["models"], MANIFEST.get("retired", {})


def _row(entry: dict) -> list[str]:
    """The results row of this shipped model: its network, and its recipe where one network is shipped twice."""
    label, recipe = entry["label"], f"{entry['epochs']} epochs, seed {entry['seed']}"
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (line.startswith("|") and re.fullmatch(rf"{re.escape(label)}( \(.*\))?", cells[0])
                and recipe in " ".join(cells)):
            return cells
    pytest.fail(f"README.md has no results row for shipped model {label} ({recipe})")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_readme_results_row_matches_manifest(name):
    entry = MODELS[name]
    cells = _row(entry)
    error = f"{100 * (1 - entry['test_accuracy']):.2f} %"
    accuracy = f"{100 * entry['test_accuracy']:.2f} % accuracy"
    assert f"**{error}** ({accuracy})" in cells, (name, cells)
    assert f"{100 * (1 - entry['test_accuracy_flip_tta']):.2f} %" in cells, (name, cells)


@pytest.mark.parametrize("name", sorted(RETIRED) or [pytest.param(None, marks=pytest.mark.skip(
    reason="no retired model in weights/manifest.json"))])
def test_readme_keeps_the_figures_of_retired_models(name):
    # Their files left weights/, so these figures are checked against the manifest, where retire kept them.
    entry = RETIRED[name]
    figures = entry["retired"]
    cells = _row(entry)
    assert f"{100 * (1 - figures['test_accuracy']):.2f} % ({100 * figures['test_accuracy']:.2f} % accuracy)" in cells
    assert f"{100 * (1 - figures['test_accuracy_flip_tta']):.2f} %" in cells, (name, cells)


@pytest.mark.parametrize("name", sorted(n for n, e in MODELS.items() if not e["plain"]))
def test_readme_paper_columns_match_paper_constants(name):
    # Table 6 and the public reproduction live in resnet_demo.paper; the README restates them beside ours.
    depth = MODELS[name]["depth"]
    cells = _row(MODELS[name])
    assert cells[1:4] == [f"{TABLE6_PARAMS_M[depth]}M", f"{TABLE6_ERROR[depth]:.2f} %",
                          f"{PUBLIC_REPRO_ERROR[depth]:.2f} %"], (name, cells)


def test_readme_states_the_size_of_weights():
    """The README's size of weights/ and count of shipped test images go stale whenever a model is shipped."""
    import numpy as np

    text = " ".join((ROOT / "README.md").read_text().split())
    stated = re.search(r"`weights/` holds ([\d.]+) MB of shipped files; the largest is `cifar10-builtin.npz` "
                       r"\(([\d.]+) MB\), the built-in training subset .*?, then `test_images.npz` \(([\d.]+) MB\), "
                       r"the ([\d,]+) test images", text)
    assert stated, "README.md no longer says how big weights/ is"
    files = [f for f in (ROOT / "weights").rglob("*") if f.is_file()]
    builtin, images = ROOT / "weights" / "cifar10-builtin.npz", ROOT / "weights" / "test_images.npz"
    with np.load(images) as z:
        count = len(z["indices"])
    assert sorted(files, key=lambda f: f.stat().st_size)[-2:] == [images, builtin]
    assert stated.groups() == (f"{sum(f.stat().st_size for f in files) / 1e6:.1f}",
                               f"{builtin.stat().st_size / 1e6:.1f}", f"{images.stat().st_size / 1e6:.1f}",
                               f"{count:,}")
