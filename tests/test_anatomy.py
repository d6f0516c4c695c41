"""resnet_demo.interpret.anatomy on random weights: the F(x) + x decomposition adds back up to each block, the stage
maps have the paper's shapes, and Fig. 7's stds are the plain std of each BN's output, chunked or not."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from resnet_demo.interpret import anatomy
from resnet_demo.nets.model import build_model


def randomised(depth: int = 14, plain: bool = False, shortcut: str = "A", seed: int = 0) -> nn.Module:
    """A network whose BNs are not the identity (fresh BNs would hide a mix-up of layers behind equal stds)."""
    torch.manual_seed(seed)
    model = build_model(depth, plain=plain, shortcut=shortcut)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1.0, 0.3)
            m.bias.data.normal_(0.0, 0.2)
    return model.eval()


@pytest.mark.parametrize("plain,shortcut", [(False, "A"), (False, "B"), (True, "A")])
def test_residual_plus_shortcut_is_the_block(plain, shortcut):
    model = randomised(plain=plain, shortcut=shortcut)
    x = torch.randn(1, 3, 32, 32)
    a = anatomy.dissect(model, x)
    assert len(a.parts) == 6
    for p in a.parts:
        if plain:
            assert p.shortcut is None
            np.testing.assert_allclose(p.total, p.residual)
        else:
            np.testing.assert_allclose(p.total, p.residual + p.shortcut, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.maximum(p.total, 0), p.output, rtol=1e-5, atol=1e-5)  # the block's ReLU
    with torch.inference_mode():
        np.testing.assert_allclose(a.logits, model(x)[0].numpy(), rtol=1e-5, atol=1e-5)


def test_the_decomposition_chains_from_block_to_block():
    """Each block's shortcut is the previous block's output (identity), or its option-A map where it downsamples."""
    a = anatomy.dissect(randomised(), torch.randn(1, 3, 32, 32))
    assert a.parts[0].info.label == "1.1"
    np.testing.assert_allclose(a.parts[0].shortcut, a.stem)
    for prev, cur in zip(a.parts, a.parts[1:]):
        if cur.info.downsamples:
            c = prev.output.shape[0]
            np.testing.assert_allclose(cur.shortcut[c // 2: c // 2 + c], prev.output[:, ::2, ::2])
            assert not cur.shortcut[: c // 2].any() and not cur.shortcut[c // 2 + c:].any()
        else:
            np.testing.assert_allclose(cur.shortcut, prev.output)


def test_stage_maps_have_the_papers_shapes():
    a = anatomy.dissect(randomised(20), torch.randn(1, 3, 32, 32))
    assert [m.shape for m in a.stages] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert a.stem.shape == (16, 32, 32)
    assert [p.info.label for p in a.parts if p.info.downsamples] == ["2.1", "3.1"]
    assert all((m >= 0).all() for m in a.stages)  # after the ReLU


def test_dissect_takes_one_image():
    with pytest.raises(ValueError, match="one image"):
        anatomy.dissect(randomised(8), torch.randn(2, 3, 32, 32))


def test_rms():
    a = np.array([[[3.0, 4.0]], [[0.0, 0.0]]])
    assert anatomy.BlockParts.rms(a, 0) == pytest.approx(np.sqrt(12.5))
    assert anatomy.BlockParts.rms(a) == pytest.approx(np.sqrt(25 / 4))
    assert anatomy.BlockParts.rms(None) is None


def test_response_stds_are_each_bn_output_std_in_forward_order():
    model = randomised(14)
    x = torch.randn(12, 3, 32, 32)
    got = anatomy.response_stds(model, [x[:5], x[5:]])  # two chunks: the same figure as one pass
    names = got["layers"]
    assert len(names) == 6 * 2 + 1 and names[:3] == ["stem", "1.1a", "1.1b"] and names[-1] == "3.2b"
    assert got["images"] == 12
    outputs = []
    hooks = [bn.register_forward_hook(lambda _m, _i, out: outputs.append(out))
             for _, bn in anatomy.response_layers(model)]
    with torch.inference_mode():
        model(x)
    for h in hooks:
        h.remove()
    np.testing.assert_allclose(got["std"], [float(o.double().std(unbiased=False)) for o in outputs], rtol=1e-6)
    assert not model.bn1._forward_hooks  # the hooks are gone afterwards


def test_response_stds_needs_images():
    with pytest.raises(ValueError, match="no images"):
        anatomy.response_stds(randomised(8), [])


def test_tile_scales_each_channel_and_leaves_gaps():
    maps = np.stack([np.full((4, 4), 5.0), np.arange(16.0).reshape(4, 4), np.zeros((4, 4))])
    t = anatomy.tile(maps)
    assert t.shape == (2 * 4 + 1, 2 * 4 + 1)  # 3 channels -> a 2x2 grid with 1-pixel gaps
    assert np.isnan(t[4]).all() and np.isnan(t[:, 4]).all()
    np.testing.assert_allclose(t[:4, 5:], np.arange(16.0).reshape(4, 4) / 15)
    assert (t[:4, :4] == 0).all()  # a constant map is drawn flat, not divided by zero
    assert np.isnan(t[5:, 5:]).all()  # the empty slot


def test_shipped_tables_are_read_or_none(tmp_path):
    assert anatomy.read_fig7(tmp_path) is None
    (tmp_path / anatomy.FIG7_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        anatomy.read_fig7(tmp_path)
