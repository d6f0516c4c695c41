"""The attacks (resnet_demo.interpret.attacks) against a small untrained ResNet: Captum's FGSM and PGD agree with
the textbook formulas written out here in plain torch, stay inside [0, 1] and within ε, change nothing at ε = 0,
move towards a target when asked, and refuse bad settings with a message."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from resnet_demo.interpret import robustness
from resnet_demo.interpret.attacks import (
    AttackError,
    Settings,
    amplified,
    attack_pixels,
    fool,
    pixel_model,
    robust_accuracy,
    smallest_eps,
    to_pixels,
)
from resnet_demo.nets.model import Arch, CifarResNet
from resnet_demo.nets.paper import MEAN, STD


@pytest.fixture(scope="module")
def model() -> CifarResNet:
    torch.manual_seed(0)
    m = CifarResNet(Arch(8)).eval()
    with torch.no_grad():  # BN statistics that are not the identity, so that the net is not trivially linear
        for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    imgs[:3] = 0  # all black and all white: the clipping at 0 and 1 matters there
    imgs[3:5] = 255
    return imgs, rng.integers(0, 10, 12)


def _net(model, x):
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return model((x - mean) / std)


def _grad_sign(model, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(_net(model, x), y, reduction="sum"), x)
    return g.sign()


def plain_fgsm(model, x, y, eps, targeted=False):
    step = -eps if targeted else eps
    return (x + step / 255 * _grad_sign(model, x, y)).clamp(0, 1)


def plain_pgd(model, x, y, eps, steps, fraction):
    adv = x.clone()
    for _ in range(steps):
        adv = adv + eps * fraction / 255 * _grad_sign(model, adv, y)
        adv = (x + (adv - x).clamp(-eps / 255, eps / 255)).clamp(0, 1)
    return adv


def test_fgsm_and_pgd_are_the_textbook_formulas(model, images):
    x, y = to_pixels(images[0]), torch.as_tensor(images[1])
    net = pixel_model(model)
    for eps in (1.0, 4.0, 16.0):
        ours = attack_pixels(net, x, y, Settings("fgsm", eps))
        assert torch.allclose(ours, plain_fgsm(model, x, y, eps), atol=1e-6)
    ours = attack_pixels(net, x, y, Settings("pgd", 4.0, steps=5, step_fraction=0.5))
    assert torch.allclose(ours, plain_pgd(model, x, y, 4.0, 5, 0.5), atol=1e-6)
    target = Settings("fgsm", 2.0, target=3)
    assert torch.allclose(attack_pixels(net, x, y, target), plain_fgsm(model, x, torch.full_like(y, 3), 2.0, True),
                          atol=1e-6)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_eps_zero_changes_nothing(model, images, attack):
    x = to_pixels(images[0])
    adv = attack_pixels(pixel_model(model), x, torch.as_tensor(images[1]), Settings(attack, 0.0, steps=3))
    assert torch.equal(adv, x)
    one = fool(model, images[0][5], Settings(attack, 0.0, steps=3))
    assert one.linf == 0 and torch.equal(one.probs_before, one.probs_after) and not one.succeeded


@pytest.mark.parametrize("settings", [Settings("fgsm", 1.0), Settings("fgsm", 16.0), Settings("pgd", 3.0, steps=4),
                                      Settings("pgd", 8.0, steps=6, step_fraction=1.0),
                                      Settings("pgd", 8.0, steps=3, target=7)])
def test_perturbation_stays_in_range_and_within_eps(model, images, settings):
    x = to_pixels(images[0])
    adv = attack_pixels(pixel_model(model), x, torch.as_tensor(images[1]), settings)
    assert adv.shape == x.shape and adv.dtype == torch.float32 and not adv.requires_grad
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert float((adv - x).abs().max()) <= settings.eps / 255 + 1e-6
    assert float((adv - x).abs().max()) > 0  # and it did move


def test_targeted_mode_moves_towards_the_target(model, images):
    for i in range(5, 10):
        before = fool(model, images[0][i], Settings("fgsm", 0.0))
        target = int(before.probs_before.argsort()[0])  # the least likely class: a real journey
        for settings in (Settings("fgsm", 2.0, target=target), Settings("pgd", 4.0, steps=5, target=target)):
            after = fool(model, images[0][i], settings)
            assert after.probs_after[target] > after.probs_before[target], (i, settings)


def test_an_untargeted_attack_moves_away_from_its_reference_and_says_what_it_took(model, images):
    steps = []
    done = fool(model, images[0][6], Settings("pgd", 8.0, steps=4), on_step=lambda: steps.append(1))
    assert len(steps) == 4  # one progress call a gradient step
    assert done.probs_after[done.reference] < done.probs_before[done.reference]
    assert done.reference == done.before and done.seconds > 0 and 0 < done.linf <= 8 + 1e-3
    picture, factor = amplified(done.perturbation, 8.0)
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8 and factor == pytest.approx(127.5 / 8)
    assert amplified(torch.zeros(1, 3, 32, 32), 0)[0].min() == 128  # no change: all mid-grey


@pytest.fixture(scope="module")
def trained():
    """The shipped ResNet-20 and a few shipped test images it gets right (an untrained net barely reacts)."""
    from resnet_demo.data.testimages import read_test_images
    from resnet_demo.store.registry import resolve, weights_dir

    model = resolve("resnet20-e100").load()
    shipped = read_test_images(weights_dir())
    picked = [(img, label) for _, (img, label) in sorted(shipped.items())[:40]
              if fool(model, img, Settings("fgsm", 0.0)).before == label]
    return model, picked[:2]


def test_smallest_eps_is_the_first_that_flips(trained):
    model, picked = trained
    found_any = False
    for image, label in picked:
        tried = []
        found = smallest_eps(model, image, Settings("fgsm"), reference=label, on_try=tried.append)
        assert tried == list(range(1, (found or 16) + 1))  # every eps in turn, from 1, up to the first that flips
        if found is None:
            assert not fool(model, image, Settings("fgsm", 16.0), reference=label).succeeded
            continue
        found_any = True
        assert fool(model, image, Settings("fgsm", float(found)), reference=label).succeeded
        if found > 1:
            assert not fool(model, image, Settings("fgsm", float(found - 1)), reference=label).succeeded
    assert found_any


def test_smallest_eps_towards_a_target(trained):
    model, picked = trained
    image, label = picked[0]
    target = (label + 1) % 10
    hit = smallest_eps(model, image, Settings("pgd", steps=3, target=target), eps_max=6)
    if hit is not None:
        assert fool(model, image, Settings("pgd", float(hit), steps=3, target=target)).after == target
        if hit > 1:
            assert fool(model, image, Settings("pgd", float(hit - 1), steps=3, target=target)).after != target
    with pytest.raises(AttackError, match="up to an ε of 1 to 16"):
        smallest_eps(model, image, Settings("fgsm"), eps_max=17)


def test_accuracy_under_attack_does_not_depend_on_the_batch(model, images):
    imgs, labels = images
    clean = robust_accuracy(model, imgs, labels, Settings("fgsm", 0.0))
    with torch.no_grad():
        expected = int((_net(model, to_pixels(imgs)).argmax(1) == torch.as_tensor(labels)).sum())
    assert clean["correct"] == expected and clean["images"] == 12
    a = robust_accuracy(model, imgs, labels, Settings("pgd", 2.0, steps=2), batch_size=5)
    b = robust_accuracy(model, imgs, labels, Settings("pgd", 2.0, steps=2), batch_size=100)
    assert a["correct"] == b["correct"] <= clean["correct"]
    with pytest.raises(AttackError, match="untargeted"):
        robust_accuracy(model, imgs, labels, Settings("fgsm", 2.0, target=1))


@pytest.mark.parametrize("settings,message", [
    (Settings("cw"), "unknown attack"), (Settings(eps=-1.0), "from 0 to 16"), (Settings(eps=17.0), "from 0 to 16"),
    (Settings(eps=float("nan")), "from 0 to 16"), (Settings(eps="4"), "from 0 to 16"),
    (Settings(eps=True), "from 0 to 16"), (Settings("pgd", steps=0), "1 to 100 steps"),
    (Settings("pgd", steps=101), "1 to 100 steps"), (Settings("pgd", steps=2.5), "1 to 100 steps"),
    (Settings("pgd", step_fraction=0.0), "fraction of ε"), (Settings("pgd", step_fraction=1.5), "fraction of ε"),
    (Settings(target=10), "target class"), (Settings(target=-1), "target class"), (Settings(target="cat"), "target"),
])
def test_bad_settings_are_refused_with_a_message(settings, message):
    with pytest.raises(AttackError, match=message):
        settings.validate()


def test_the_app_can_cap_steps_and_eps_lower():
    Settings("pgd", 4.0, steps=20).validate(max_steps=20)
    with pytest.raises(AttackError, match="1 to 20 steps"):
        Settings("pgd", 4.0, steps=21).validate(max_steps=20)
    assert Settings("pgd", 2.0).describe() == "PGD, 10 steps of ε/4, ε = 2/255"
    assert Settings("fgsm", 1.0, target=3).describe() == "FGSM, ε = 1/255, towards “cat”"


def test_table_rows_merge_resume_and_chart(tmp_path):
    path = tmp_path / "robustness.json"
    info = {"label": "ResNet-8", "sha256": "ab" * 32}
    first = {"sha256": "cd" * 32, "data": "full"}
    rows = []
    for attack, eps, acc in (("fgsm", 0.0, 0.9), ("fgsm", 2.0, 0.5), ("fgsm", 1.0, 0.6), ("pgd", 2.0, 0.2)):
        row = robustness.row_for("r8", Settings(attack, eps), 100)
        rows.append({**row, "correct": int(acc * 100), "accuracy": acc, "seconds": 1.0})
        robustness.save_row(path, rows[-1], info, first, f"cmd {attack}")
    table = robustness.read_table(path)
    assert len(table["results"]) == 4 and table["commands"] == ["cmd fgsm", "cmd pgd"]
    assert len(path.read_text().splitlines()) < 40  # one result a line: a few kB for a whole table
    cell = robustness.row_for("r8", Settings("fgsm", 2.0), 100)
    assert robustness.find(table, cell, info["sha256"], first)["accuracy"] == 0.5
    assert robustness.find(table, cell, "00" * 32, first) is None  # another model file: measured again
    assert robustness.find(table, cell, info["sha256"], {**first, "sha256": "ee" * 32}) is None  # other images
    robustness.save_row(path, {**rows[1], "accuracy": 0.55}, info, first, "cmd fgsm")  # the same cell replaces
    series = {s["attack"]: s for s in robustness.table_series(robustness.read_table(path))}
    assert series["fgsm"]["eps"] == [0.0, 1.0, 2.0] and series["fgsm"]["accuracy"] == [0.9, 0.6, 0.55]
    assert series["pgd"]["eps"] == [0.0, 2.0] and series["pgd"]["steps"] == 10 and series["pgd"]["label"] == "ResNet-8"
    assert series["pgd"]["data"] == "full"
    robustness.save_row(path, rows[1], {**info, "sha256": "99" * 32}, first, "cmd fgsm")  # a new file of the model
    assert [r["eps"] for r in robustness.read_table(path)["results"]] == [2.0]  # its old cells are gone
    path.write_text("{not json")
    with pytest.raises(ValueError, match="could not be read"):
        robustness.read_table(path)
    assert robustness.read_table(tmp_path / "none.json") is None
