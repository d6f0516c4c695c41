"""The architecture of Sec. 4.2: valid depths, Table 6 parameter counts, options A/B, the plain twin, hook-safety."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from torch import nn

from resnet_demo import cli
from resnet_demo.nets.model import Arch, BasicBlock, PadShortcut, build_model, count_params, describe
from resnet_demo.nets.paper import PRESET_DEPTHS, TABLE6_PARAMS_M, blocks_per_stage

# Option-A parameter counts, summed by hand (stem 3x3 conv+BN, 3 stages of n blocks of two 3x3 conv+BN, fc):
# 269,722 for ResNet-20 as in public reproductions; rounded they are Table 6's 0.27M ... 1.7M, 19.4M.
EXACT_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}


@pytest.mark.parametrize("depth", [8, 14, *PRESET_DEPTHS, 1202])
def test_every_6n_plus_2_depth_is_accepted(depth):
    assert blocks_per_stage(depth) == (depth - 2) // 6
    assert Arch(depth).depth == depth


@pytest.mark.parametrize("depth", [0, 2, 7, 9, 18, 21, 100, -4])
def test_other_depths_are_refused_with_a_clear_message(depth):
    with pytest.raises(ValueError) as e:
        Arch(depth)
    msg = str(e.value)
    assert "6n+2" in msg and str(depth) in msg
    assert "20, 32, 44, 56, 110" in msg  # tells the user what the paper used


@pytest.mark.parametrize("bad", [20.0, "20", True])
def test_non_integer_depths_are_refused(bad):
    with pytest.raises(ValueError, match="integer"):
        blocks_per_stage(bad)


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_parameter_counts_match_table6(depth):
    n = count_params(build_model(depth))
    assert n == EXACT_PARAMS[depth]
    assert round(n / 1e6, 2 if depth < 100 else 1) == TABLE6_PARAMS_M[depth]


def test_resnet1202_parameter_count_without_running_it():
    model = build_model(1202)
    n = count_params(model)
    assert n == EXACT_PARAMS[1202] and round(n / 1e6, 1) == TABLE6_PARAMS_M[1202]


@pytest.mark.parametrize("depth", [8, 20])
def test_option_b_differs_only_by_projection_convs(depth):
    a, b = build_model(depth, shortcut="A").state_dict(), build_model(depth, shortcut="B").state_dict()
    extra = sorted(set(b) - set(a))
    assert set(a) <= set(b)
    assert all(a[k].shape == b[k].shape for k in a)
    # Two projections (16->32 and 32->64), each a 1x1 conv + BN, in the first block of stages 2 and 3.
    assert {k.split(".shortcut.")[0] for k in extra} == {"layer2.0", "layer3.0"}
    convs = [k for k in extra if b[k].dim() == 4]
    assert sorted(tuple(b[k].shape) for k in convs) == [(32, 16, 1, 1), (64, 32, 1, 1)]
    extra_params = sum(p.numel() for k, p in build_model(depth, shortcut="B").named_parameters() if ".shortcut." in k)
    assert count_params(build_model(depth, shortcut="B")) - count_params(build_model(depth)) == extra_params == 2752
    info = describe(Arch(depth, shortcut="B"))
    assert info["projection_convs"] == 2 and info["weighted_layers"] == depth


@pytest.mark.parametrize("depth", [8, 20])
def test_plain_twin_has_no_shortcuts_and_the_same_parameters(depth):
    plain, res = build_model(depth, plain=True), build_model(depth)
    assert count_params(plain) == count_params(res)
    blocks = [m for m in plain.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3 * blocks_per_stage(depth)
    assert all(not b.residual and b.shortcut is None for b in blocks)
    assert not any(isinstance(m, PadShortcut) for m in plain.modules())
    assert sum(isinstance(m, PadShortcut) for m in res.modules()) == 2
    # No shortcut means the block output is exactly relu(bn2(conv2(...))): check numerically on one block.
    block = blocks[0].eval()
    x = torch.randn(2, 16, 8, 8)
    expected = block.relu2(block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(x))))))
    assert torch.equal(block(x), expected)
    assert describe(Arch(depth, plain=True))["shortcuts"] == 0


@pytest.mark.parametrize("arch", [Arch(8), Arch(14, shortcut="B"), Arch(8, plain=True)])
def test_each_relu_is_its_own_module_and_every_module_runs_once(arch):
    model = build_model(arch.depth, arch.plain, arch.shortcut).eval()
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 1 + 2 * 3 * blocks_per_stage(arch.depth) == describe(arch)["relu_modules"]
    assert len({id(m) for m in relus}) == len(relus)
    assert not any(m.inplace for m in relus)
    calls: Counter = Counter()
    hooks = [m.register_forward_hook(lambda m, i, o: calls.update([id(m)])) for m in model.modules()]
    try:
        with torch.no_grad():
            out = model(torch.randn(2, 3, 32, 32))
    finally:
        for h in hooks:
            h.remove()
    assert out.shape == (2, 10)
    names = {id(m): n or "<root>" for n, m in model.named_modules()}
    twice = [names[i] for i, c in calls.items() if c != 1]
    never = [n for n, m in model.named_modules() if id(m) not in calls]
    assert not twice, f"modules run more than once: {twice}"
    assert not never, f"modules never run: {never}"


def test_shapes_through_the_stages():
    model = build_model(8).eval()
    with torch.no_grad():
        f = model.features(torch.randn(3, 3, 32, 32))
    assert f.shape == (3, 64, 8, 8)


def test_arch_round_trip_and_names():
    for arch in (Arch(20), Arch(56, plain=True), Arch(32, shortcut="B")):
        assert Arch.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
    names = (Arch(20).name, Arch(56, plain=True).name, Arch(32, shortcut="B").name)
    assert names == ("resnet20", "plain56", "resnet32-B")
    with pytest.raises(ValueError, match="shortcut"):
        Arch(20, shortcut="C")


def test_info_json_fields(capsys):
    assert cli.main(["info", "--depth", "20", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "resnet20" and info["label"] == "ResNet-20"
    assert (info["depth"], info["plain"], info["shortcut"]) == (20, False, "A")
    assert info["params"] == EXACT_PARAMS[20]
    assert info["blocks_per_stage"] == 3 and info["weighted_layers"] == 20
    assert info["conv_layers"] == 19 and info["projection_convs"] == 0 and info["fc_layers"] == 1
    assert info["relu_modules"] == 19 and info["shortcuts"] == 9
    assert [(s["filters"], s["output_size"]) for s in info["stages"]] == [(16, 32), (32, 16), (64, 8)]
    # ~41M multiply-accumulates per image for ResNet-20 (the paper quotes FLOPs for ImageNet nets only).
    assert 40e6 < info["macs"] < 42e6


def test_info_text_and_bad_depth_on_the_command_line(capsys):
    assert cli.main(["info", "--depth", "110"]) == 0
    out = capsys.readouterr().out
    assert "1,727,962 parameters" in out and "Table 6: 1.7M" in out
    with pytest.raises(SystemExit) as e:
        cli.main(["info", "--depth", "21"])
    assert e.value.code == 2
    assert "6n+2" in capsys.readouterr().err
