"""resnet_demo.interpret.knockout: removing a block is running the network with that block replaced by what it leaves
(its shortcut, the identity, or the option-A map), the shared-prefix fast path gives exactly that, and the
shipped full-test-set table is whole and agrees with the manifest."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_anatomy import randomised

from resnet_demo.interpret import knockout
from resnet_demo.interpret.anatomy import block_infos, blocks
from resnet_demo.nets.model import PadShortcut

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


@pytest.mark.parametrize("plain,shortcut", [(False, "A"), (False, "B"), (True, "A")])
def test_fast_knockouts_equal_running_the_network_without_the_block(plain, shortcut):
    model = randomised(14, plain=plain, shortcut=shortcut)
    x = torch.randn(6, 3, 32, 32)
    intact, knocked = knockout.knockout_logits(model, x)
    with torch.inference_mode():
        torch.testing.assert_close(intact, model(x))
        assert sorted(knocked) == list(range(6))
        for k, logits in knocked.items():
            torch.testing.assert_close(logits, knockout.without_block(model, k)(x))
            assert not torch.allclose(logits, intact)  # every block does something on random weights


def test_removing_a_resnet_block_keeps_only_its_shortcut():
    model = randomised(14)
    chain = blocks(model)
    a = torch.relu(torch.randn(2, 16, 32, 32))  # a block's input is a ReLU output
    with torch.inference_mode():
        torch.testing.assert_close(knockout.bypass(chain[0], a), a)  # identity shortcut: x itself
        down = chain[2]  # 2.1: 16 -> 32 channels, 32x32 -> 16x16
        torch.testing.assert_close(knockout.bypass(down, a), down.shortcut(a))
    assert [knockout.replacement(b) for b in chain] == ["identity", "identity", knockout.PAD, "identity",
                                                         knockout.PAD, "identity"]
    b_model = randomised(14, shortcut="B")
    assert knockout.replacement(blocks(b_model)[2]) == knockout.PROJECTION


def test_a_plain_block_becomes_the_identity_or_the_option_a_map():
    chain = blocks(randomised(14, plain=True))
    a = torch.relu(torch.randn(2, 16, 32, 32))
    with torch.inference_mode():
        torch.testing.assert_close(knockout.bypass(chain[0], a), a)
        torch.testing.assert_close(knockout.bypass(chain[2], a), PadShortcut(16, 32)(a))
    assert knockout.replacement(chain[2]) == knockout.PAD and knockout.replacement(chain[1]) == knockout.IDENTITY


def test_without_block_leaves_the_original_alone():
    model = randomised(8)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        before = model(x)
        knockout.without_block(model, 1)
        torch.testing.assert_close(model(x), before)


def test_one_knockout_without_the_intact_pass():
    model = randomised(14)
    x = torch.randn(4, 3, 32, 32)
    intact, knocked = knockout.knockout_logits(model, x, [3], intact=False)
    assert intact is None and list(knocked) == [3]
    with torch.inference_mode():
        torch.testing.assert_close(knocked[3], knockout.without_block(model, 3)(x))
    with pytest.raises(ValueError, match="do not exist"):
        knockout.knockout_logits(model, x, [6])


def test_table_and_predictions_agree():
    model = randomised(14)
    torch.manual_seed(1)
    x, y = torch.randn(20, 3, 32, 32), torch.randint(0, 10, (20,))
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]
    seen = []
    table = knockout.knockout_table(model, batches, progress=lambda c: seen.append(c.images))
    assert seen == [8, 20] and table["images"] == 20
    intact = knockout.predict_without(model, [x[:8], x[8:]], None)
    assert table["intact_accuracy"] == pytest.approx(float((intact == y.numpy()).mean()))
    for row, info in zip(table["blocks"], block_infos(model)):
        pred = knockout.predict_without(model, [x[:8], x[8:]], info.index)
        assert row["block"] == info.label and row["downsamples"] == info.downsamples
        assert row["accuracy"] == pytest.approx(float((pred == y.numpy()).mean()))
        assert row["changed"] == pytest.approx(float((pred != intact).mean()))
    saved = []  # stop after the first batch, save, and go on from the saved counts: the same table
    knockout.knockout_table(model, batches[:1], progress=lambda c: saved.append(json.loads(json.dumps(c.to_dict()))))
    resumed = knockout.knockout_table(model, batches[1:], counts=knockout.Counts.from_dict(saved[-1]))
    assert resumed == table
    only = knockout.knockout_table(model, batches, only=[2])
    assert [r["block"] for r in only["blocks"]] == ["2.1"] and only["blocks"][0] == table["blocks"][2]


# --- the shipped table ---------------------------------------------------------------------------------------

def shipped_table() -> dict:
    table = knockout.read_table(WEIGHTS)
    if table is None:
        pytest.skip("weights/knockout.json is not shipped")
    return table


def test_shipped_table_is_whole_and_matches_the_manifest():
    table = shipped_table()
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())["models"]
    assert table["test_set"]["images"] == 10_000 and table["precision"] == "fp32"
    assert set(table["models"]) == {"resnet56-e100", "plain56", "resnet110-e100"}
    for name, rec in table["models"].items():
        m = manifest[name]
        assert rec["weights_sha256"] == m["sha256"], f"{name}: measured on other weights than those shipped"
        n = (m["depth"] - 2) // 6
        assert [r["block"] for r in rec["blocks"]] == [f"{s}.{j}" for s in (1, 2, 3) for j in range(1, n + 1)]
        assert rec["images"] == 10_000
        # the intact network here is the one the manifest evaluated (both fp32 on the CPU)
        assert abs(rec["intact_accuracy"] - m["test_accuracy"]) <= 2e-4, name
        assert all(r["replacement"] == (knockout.PAD if r["downsamples"] else knockout.IDENTITY) for r in rec["blocks"])
    assert (WEIGHTS / knockout.TABLE_FILE).stat().st_size < 100_000


@pytest.mark.realdata
@pytest.mark.slow
def test_shipped_table_rows_reproduce_on_the_real_test_set(real_test_split, shipped_evaluation):
    """Two rows of ResNet-56's table, re-measured one block at a time (the slow path), and its intact accuracy.

    The intact network is the plain forward pass (predict_without(model, x, None) equals model(x): the tests above
    check it on random weights), so its accuracy is the one evaluate() measures: the session's shared evaluation
    of the shipped file (conftest.py) gives it without a third pass over the 10,000 images."""
    from resnet_demo.data.loader import normalize
    from resnet_demo.store.registry import resolve

    rec = shipped_table()["models"]["resnet56-e100"]
    test = real_test_split
    entry = resolve("resnet56-e100")
    model = entry.load()
    x = normalize(torch.from_numpy(test.images).permute(0, 3, 1, 2))
    for k in (1, 9):  # a block that keeps the map size, and one that halves it
        pred = knockout.predict_without(model, x.split(250), k)
        assert float((pred == test.labels).mean()) == pytest.approx(rec["blocks"][k]["accuracy"], abs=1e-4)
    assert np.isclose(rec["intact_accuracy"], shipped_evaluation(entry)["accuracy"], atol=1e-4)
