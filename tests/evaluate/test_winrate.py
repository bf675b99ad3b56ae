"""Win/tie/loss counting, the ties-half win rate and the seeded bootstrap on hand-checked inputs."""

from __future__ import annotations

import math

import pytest

from chatglm_rlhf.evaluate import winrate


def test_count_and_rates_on_known_verdicts():
    c = winrate.count(["a", "a", "b", "tie", "win", "loss"])
    assert (c.win, c.tie, c.loss, c.n) == (3, 1, 2, 6)
    assert c.win_rate == pytest.approx((3 + 0.5) / 6)
    assert c.rate("tie") == pytest.approx(1 / 6)


def test_bad_verdict_is_an_error():
    with pytest.raises(ValueError, match="verdict"):
        winrate.count(["a", "A"])


def test_empty_is_nan_not_a_crash():
    s = winrate.summary([])
    assert s["n"] == 0 and math.isnan(s["win_rate"]) and all(math.isnan(x) for x in s["ci"])


@pytest.mark.parametrize(
    ("verdicts", "expected"), [(["a"] * 30, 1.0), (["tie"] * 30, 0.5), (["b"] * 30, 0.0)]
)
def test_bootstrap_of_constant_outcomes_is_a_point(verdicts, expected):
    assert winrate.bootstrap_ci(verdicts, 200) == (expected, expected)


def test_bootstrap_width_matches_the_normal_approximation():
    # 200 wins, 200 losses: win rate 0.5, standard error sqrt(0.25 / 400) = 0.025, 95% CI ~ 0.5 +- 0.049.
    lo, hi = winrate.bootstrap_ci(["a", "b"] * 200, n_resamples=4000, seed=1)
    assert lo == pytest.approx(0.451, abs=0.008)
    assert hi == pytest.approx(0.549, abs=0.008)


def test_bootstrap_is_seeded():
    v = ["a", "b", "tie", "a", "a", "b", "tie", "a"] * 5
    assert winrate.bootstrap_ci(v, 300, seed=7) == winrate.bootstrap_ci(v, 300, seed=7)
    assert winrate.bootstrap_ci(v, 300, seed=7) != winrate.bootstrap_ci(v, 300, seed=8)


def test_table_per_category_and_missing_category():
    verdicts = ["a", "b", "tie", "a", "a"]
    cats = ["math", "math", "chat", None, "chat"]
    t = winrate.table(verdicts, cats, n_resamples=50)
    assert t["overall"]["n"] == 5 and t["overall"]["win"] == 3
    per = t["per_category"]
    assert set(per) == {"math", "chat", winrate.NO_CATEGORY}
    assert (per["math"]["win"], per["math"]["loss"]) == (1, 1)
    assert per["chat"]["win_rate"] == pytest.approx(0.75)
    assert per[winrate.NO_CATEGORY]["win_share"] == 1.0
    text = winrate.format_table(t, "demo")
    assert "overall" in text and "math" in text


def test_table_length_mismatch():
    with pytest.raises(ValueError):
        winrate.table(["a"], ["x", "y"])
