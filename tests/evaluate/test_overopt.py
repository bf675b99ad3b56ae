"""The kept PPO checkpoint: chosen on dev win rates by the judges' mean, the proxy, or the last."""

from __future__ import annotations

import pytest

from chatglm_rlhf.evaluate.overopt import choose_checkpoint, judges_mean

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
