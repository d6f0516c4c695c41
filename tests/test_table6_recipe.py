"""The GPU recipe (the table6 preset): its epochs per depth follow from the recorded runs, and its schedule."""
from __future__ import annotations

import pytest
import torch

from benchmarks.recipe_evidence import add_runs, chosen_epochs, evidence, needed_epochs
from resnet_demo.training.recipes import RECIPES, TABLE6_EPOCHS, get_recipe


def test_the_epochs_per_depth_are_what_the_evidence_gives():
    rows = evidence()
    assert tuple((r["depth"], r["epochs"]) for r in rows) == TABLE6_EPOCHS
    # ResNet-20: the shipped runs alone said 40, a second 40-epoch run fell short of Table 6, two at 50 held
    (r20,) = [r for r in rows if r["depth"] == 20]
    assert r20["interpolated"] == 40 and min(r20["runs"][40]) < 91.25 and len(r20["runs"][50]) >= 2
    # what they rest on: at batch 256, 100 epochs beat Table 6 at every depth, 40 epochs only at depth 20
    assert all(r["margin_100"] > 0 for r in rows)
    assert [r["depth"] for r in rows if r["margin_40"] > 0] == [20]
    # a cosine schedule gets there only near its end: every 100-epoch run crossed in its last 15 %
    assert all(85 <= r["crossed_100"] <= 100 for r in rows)


def test_needed_epochs_interpolates_log_linearly():
    # 90 % at 40 epochs and 92 % at 160: +1 point per doubling; 91.2 + 0.2 needs 1.4 doublings = 105.6 -> 110
    assert needed_epochs((40, 90.0), (160, 92.0), 91.2) == 110
    # already past the goal at 40 epochs: 40 * 2.5 ** (-0.8) = 19.2 -> 20
    assert needed_epochs((40, 92.0), (100, 93.0), 91.0) == 20


def test_runs_beyond_the_shipped_ones_can_only_lengthen_an_entry():
    goal = 91.25
    # nothing measured at the interpolated length or beyond falls short: it stands
    assert chosen_epochs(40, {40: [91.56], 100: [92.47]}, goal) == 40
    assert chosen_epochs(75, {40: [90.0], 100: [93.0]}, goal) == 75  # a short run below the entry says nothing
    # one run at 40 below Table 6: the fewest longer length where two runs or more all hold, with the margin
    assert chosen_epochs(40, {40: [91.56, 90.89], 50: [91.6, 91.5], 100: [92.47]}, goal) == 50
    assert chosen_epochs(40, {40: [91.56, 91.3]}, goal) is None  # mean 91.43 < 91.45 and nothing longer measured
    assert chosen_epochs(40, {40: [91.56, 90.89], 50: [91.9, 91.2], 60: [91.7, 91.6]}, goal) == 60
    assert chosen_epochs(40, {40: [91.56, 90.89], 50: [91.9], 100: [92.47, 92.3]}, goal) == 100  # one run is no proof


def _run_folder(path, depth=20, epochs=3, seed=1, final=0.9131, test_images=10_000, preset="table6"):
    import json

    path.mkdir()
    (path / "metrics.json").write_text(json.dumps({
        "depth": depth, "epochs": epochs, "seed": seed, "precision": "bf16", "step_path": "eager", "preset": preset,
        "hardware": "a CPU", "torch": "2.x",
        "command": "python -m resnet_demo train --out /x/r1 --data-dir /y/data --seed 1", "wall_time_s": 12.0,
        "test_accuracy": final, "test_images": test_images}))
    (path / "events.jsonl").write_text("".join(json.dumps(
        {"type": "epoch", "epoch": e, "train_loss": 1.0 / e, "test_acc": 0.5 + e / 10}) + "\n"
        for e in range(1, epochs + 1)))
    return path


def test_a_finished_run_is_recorded_once_with_its_curve(tmp_path):
    runs = tmp_path / "runs.json"
    add_runs([_run_folder(tmp_path / "a")], runs)
    (r,) = add_runs([_run_folder(tmp_path / "b", final=0.9140)], runs)  # the same run again replaces it
    assert (r["depth"], r["epochs"], r["seed"], r["final"]) == (20, 3, 1, 0.9140)
    assert [c["epoch"] for c in r["curve"]] == [1, 2, 3] and r["curve"][0] == {"epoch": 1, "train_loss": 1.0,
                                                                                 "test_acc": 0.6}
    assert r["command"] == "python -m resnet_demo train --out RUN --data-dir DATA --seed 1"  # no machine's folders
    rows = {row["depth"]: row for row in evidence(runs_path=runs)}
    assert rows[20]["runs"][3] == [91.4] and rows[20]["runs"][40] == [91.56]
    with pytest.raises(SystemExit, match="not a table6 run evaluated on all 10,000"):
        add_runs([_run_folder(tmp_path / "c", test_images=500)], runs)
    with pytest.raises(SystemExit):
        add_runs([_run_folder(tmp_path / "d", preset="fast")], runs)


@pytest.mark.parametrize("depth,epochs", [(8, 50), (20, 50), (26, 75), (32, 75), (44, 65), (56, 85), (110, 85),
                                          (1202, 85)])
def test_each_depth_gets_its_length(depth, epochs):
    r = get_recipe("table6", "cuda", depth=depth)
    assert r.epochs == epochs and r.batch_size == 256 and r.lr == 0.2
    assert get_recipe("table6", depth=depth, epochs=3).epochs == 3  # --epochs still wins
    assert get_recipe("fast", depth=depth).epochs == 40  # other presets do not depend on depth


def test_the_schedule_warms_up_then_anneals_to_zero_at_its_end():
    r = get_recipe("table6", depth=20)
    total = r.epochs * (50_000 // r.batch_size)
    assert total == 9750
    lrs = [r.lr_at(s, total) for s in range(total + 1)]
    peak = int(0.15 * total)
    assert max(lrs) == lrs[peak] == r.lr and lrs[0] == pytest.approx(0.1 * r.lr)
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert lrs[-1] == 0.0 and lrs[int(0.9 * total)] < 0.07 * r.lr  # the last tenth: where Table 6 is crossed


def test_the_preset_is_offered_everywhere_a_preset_is():
    assert "table6" in RECIPES and RECIPES["table6"].epochs_for(56) == 85


def test_recipe_trials_runs_each_knob_and_writes_its_record(synthetic_data_dir, tmp_path):
    """The ablation script behind docs/GPU.md's "Fewer epochs": every knob on at once, two short epochs."""
    import json

    from benchmarks.recipe_trials import main

    out = tmp_path / "trial.json"
    assert main(["--data-dir", str(synthetic_data_dir), "--out", str(out), "--depth", "8", "--epochs", "2",
                 "--batch", "128", "--ema", "0.9", "--zero-bn", "--nowd-bn", "--bn-lr", "2", "--alt-flip",
                 "--sched", "lin", "--pad", "2"]) == 0
    rec = json.loads(out.read_text())
    assert [h["epoch"] for h in rec["history"]] == [1, 2]
    assert 0 <= rec["final"] <= 1 and 0 <= rec["final_ema"] <= 1
    assert set(rec["tracked_averages"]) == {"0.99", "0.995", "0.998"}
    assert rec["args"]["zero_bn"] and "data_dir" not in rec["args"]


def test_recipe_trials_alternating_flips_flip_each_image_every_other_epoch(synthetic_data_dir):
    """With --alt-flip every image is flipped in one epoch and not in the next; without it, about half change."""
    from benchmarks.recipe_trials import Batches, parse
    from resnet_demo.data.cifar import load_cifar10

    data = load_cifar10(synthetic_data_dir)
    for alt in (True, False):
        a = parse(["--data-dir", str(synthetic_data_dir), "--out", "x"] + (["--alt-flip"] if alt else []))
        b = Batches(data.train.images, data.train.labels, a)
        (_, _, f0), (_, _, f1), (_, _, f2) = b.draw(0), b.draw(1), b.draw(2)
        changed = (f0 ^ f1).float().mean().item()
        assert (changed == 1.0 and torch.equal(f0, f2)) if alt else 0.3 < changed < 0.7
