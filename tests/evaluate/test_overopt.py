"""The kept PPO checkpoint: chosen on dev win rates by the judges' mean, the proxy, or the last."""

from __future__ import annotations

import pytest
import torch

from chatglm_rlhf.evaluate.overopt import choose_checkpoint, ensemble_point, gold_drop, judges_mean

POINTS = [
    {"step": 10, "proxy_rm": 0.55, "judge_rm": 0.60, "judge_rm_2": 0.58},
    {"step": 20, "proxy_rm": 0.70, "judge_rm": 0.64, "judge_rm_2": 0.60},  # judges' mean 0.62
    {"step": 30, "proxy_rm": 0.80, "judge_rm": 0.66, "judge_rm_2": 0.58},  # 0.62 too: the earlier wins
    {"step": 40, "proxy_rm": 0.85, "judge_rm": 0.50, "judge_rm_2": 0.52},  # over-optimised
]
JUDGES = ("judge_rm", "judge_rm_2")


def test_judges_mean_by_hand():
    assert judges_mean(POINTS[1], JUDGES) == pytest.approx(0.62)
    assert judges_mean({"judge_rm": 0.5}, JUDGES) is None


def test_choice_by_judges_proxy_and_last():
    assert choose_checkpoint(POINTS, "judges", JUDGES) == 1  # a tie at 0.62 keeps the earlier step
    assert choose_checkpoint(POINTS, "proxy", JUDGES) == 3  # the proxy would keep the over-optimised one
    assert choose_checkpoint(POINTS, "last", JUDGES) == 3
    assert choose_checkpoint(POINTS[:1], "judges", JUDGES) == 0
    with pytest.raises(ValueError):
        choose_checkpoint([], "judges", JUDGES)


def test_ensemble_point_by_hand():
    # Two members, two answers: member means per answer 2 and 0, member stds 1 and 0.
    scores = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    out = ensemble_point(scores, lam=0.5)
    assert out["ensemble_mean"] == pytest.approx(1.0)  # (2 + 0) / 2
    assert out["ensemble_std"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert out["ensemble_reward"] == pytest.approx(0.75)  # ((2 - 0.5) + 0) / 2
    assert ensemble_point(scores, lam=0.0)["ensemble_reward"] == pytest.approx(1.0)


def test_gold_drop_from_the_peak():
    points = [{"step": 10, "gold": 0.6}, {"step": 20, "gold": 0.7}, {"step": 30, "gold": 0.7},
              {"step": 40, "gold": 0.55}]  # fmt: skip
    out = gold_drop(points)
    assert (
        out["peak_step"] == 20 and out["peak"] == 0.7 and out["final"] == 0.55
    )  # the earlier of equal peaks
    assert out["drop_from_peak"] == pytest.approx(0.15)
    assert gold_drop([{"step": 5, "gold": 0.4}, {"step": 9, "gold": 0.5}])["drop_from_peak"] == 0.0
    assert gold_drop([{"step": 5}])["peak"] is None


def test_ensemble_lam_script_counts_pairs_ordered_as_gold(repo_script):
    pair_accuracy = repo_script("scripts/ensemble_lam.py").pair_accuracy
    # One prompt, three answers (reward, gold): gold orders c > b > a; the reward gets (a, b) and (a, c)
    # right and (b, c) wrong: 2 of 3. A gold tie is not a pair.
    assert pair_accuracy([[(0.0, 0.1), (2.0, 0.5), (1.0, 0.9)]]) == pytest.approx(2 / 3)
    assert pair_accuracy([[(0.0, 0.5), (1.0, 0.5)], [(1.0, 0.2)]]) is None
