"""The eval report's statistics on hand-computed numbers."""

import pytest

from chatglm_rlhf.reward.evaluation import format_report, pair_report, pearson, ranks, spearman


def test_pearson_and_spearman():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # x = 1..4, y = 1,3,2,4: cov = 4/4, var_x = var_y = 5/4 -> r = 0.8
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert pearson([1, 1, 1], [1, 2, 3]) is None and pearson([1], [2]) is None
    assert ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    # monotone but not linear: Spearman 1, Pearson < 1
    x, y = [1, 2, 3, 4], [1, 10, 100, 1000]
    assert spearman(x, y) == pytest.approx(1.0) and pearson(x, y) < 0.99


def test_pair_report():
    # chosen longer in pairs 0,1; shorter in 2,3; RM right on 0,1,2, wrong on 3
    rep = pair_report(
        r_chosen=[1.0, 2.0, 0.5, -1.0],
        r_rejected=[0.0, 1.0, 0.0, 0.0],
        len_chosen=[10, 5, 2, 3],
        len_rejected=[2, 4, 20, 4],
        edges=[3, 10],
    )
    assert rep["n"] == 4 and rep["accuracy"] == 0.75
    assert rep["longer_preferred"] == {"n": 2, "accuracy": 1.0}
    assert rep["shorter_preferred"] == {"n": 2, "accuracy": 0.5}
    assert rep["accuracy_by_bucket"] == {
        "[1,3)": {"n": 2, "accuracy": 0.5},
        "[3,10)": {"n": 1, "accuracy": 1.0},
        ">=10": {"n": 1, "accuracy": 1.0},
    }
    rewards = [1.0, 2.0, 0.5, -1.0, 0.0, 1.0, 0.0, 0.0]
    assert rep["reward_mean"] == pytest.approx(sum(rewards) / 8)
    assert rep["length_pearson"] == pytest.approx(pearson(rewards, [10, 5, 2, 3, 2, 4, 20, 4]))
    assert "accuracy 75.0% on 4 pairs" in format_report(rep)
