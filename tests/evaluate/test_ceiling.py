"""Best-of-n ceiling math on hand-made score matrices (scores[k][i]: sample k of prompt i)."""

import pytest

from chatglm_rlhf.evaluate.ceiling import by_category, ceiling_rows, pick_best

# 3 prompts, 3 samples each. Gold likes sample 2 of prompt 0, sample 0 of prompt 1, sample 1 of prompt 2.
GOLD = [[0.4, 1.0, 0.0], [0.0, 0.4, 1.0], [1.0, 0.0, 0.4]]
# The RM agrees on prompt 0 only (and prefers the worst sample elsewhere).
RM = [[0.1, 0.2, 0.9], [0.0, 0.1, 0.5], [2.0, 0.3, 0.1]]
BASELINE = [0.4, 0.4, 0.4]


def test_pick_best_respects_n_and_breaks_ties_to_the_first():
    assert pick_best(GOLD, 3) == [2, 0, 1]
    assert pick_best(GOLD, 2) == [0, 0, 1]  # sample 2 is not available with n = 2
    assert pick_best([[1.0], [1.0]], 2) == [0]
    with pytest.raises(ValueError):
        pick_best(GOLD, 4)


def test_win_rate_counts_ties_half():
    # One sample per prompt: gold [1.0, 0.42, 0.0] vs baseline 0.4 -> win, tie (|0.02| < 0.05), loss.
    one = [[1.0, 0.42, 0.0]]
    assert ceiling_rows(one, one, BASELINE, [1], tie_margin=0.05)[0]["gold_pick_win_rate"] == pytest.approx(
        0.5
    )
    with pytest.raises(ValueError):
        ceiling_rows(one, one, [0.4], [1], tie_margin=0.05)


def test_ceiling_rows_gold_pick_bounds_the_rm_pick():
    rows = ceiling_rows(GOLD, RM, BASELINE, [1, 3], tie_margin=0.05)
    # n = 1: both pick sample 0 -> gold [0.4, 1.0, 0.0] -> tie, win, loss.
    assert rows[0] == {"n": 1, "gold_pick_win_rate": 0.5, "gold_pick_score": pytest.approx(1.4 / 3),
                       "rm_pick_win_rate": 0.5, "rm_pick_score": pytest.approx(1.4 / 3)}  # fmt: skip
    # n = 3: gold picks 1.0 everywhere (3 wins); the RM picks samples 2, 2, 0 -> gold 1.0, 0.0, 0.0.
    assert rows[1]["gold_pick_win_rate"] == 1.0 and rows[1]["gold_pick_score"] == 1.0
    assert rows[1]["rm_pick_win_rate"] == pytest.approx(1 / 3)
    assert rows[1]["rm_pick_score"] == pytest.approx(1 / 3)


def test_by_category_means_per_category():
    out = by_category(GOLD, RM, BASELINE, ["facts", "format", "facts"])
    # facts = prompts 0 and 2: gold picks 1.0 and 1.0; the RM picks gold 1.0 (prompt 0) and 0.0 (prompt 2).
    assert out["facts"] == {"n": 2, "sft_greedy_score": 0.4, "gold_pick_score": 1.0, "rm_pick_score": 0.5}
    assert out["format"]["rm_pick_score"] == 0.0 and out["format"]["gold_pick_score"] == 1.0
