"""When one reference answer is too noisy for the reference baseline: hand-computed variance splits."""

import pytest

from chatglm_rlhf.policy.online.baseline_noise import answers_needed, baseline_advice, variance_split


def test_variance_split_by_hand():
    # Two prompts, two answers each: means 1 and 3 (pvariance 1); within pvariance 1 each (variance 2).
    s = variance_split([[0.0, 2.0], [2.0, 4.0]])
    assert s["share"] == pytest.approx(0.5)  # B 1 / (B 1 + W 1)
    assert s["within"] == pytest.approx(2.0) and s["between"] == pytest.approx(0.0)  # 1 - 2 / 2: all noise
    s = variance_split([[0.0, 0.2], [5.0, 5.2], [10.0, 10.2]])
    assert s["share_unbiased"] > 0.99 and s["prompts"] == 3 and s["k"] == 2
    assert variance_split([[1.0], []]) is None


@pytest.mark.parametrize(
    ("b", "w", "n"), [(1.0, 0.5, 1), (1.0, 1.0, 2), (1.0, 3.5, 4), (0.0, 1.0, None), (1.0, 0.0, 1)]
)
def test_answers_needed_is_the_fewest_with_w_over_n_below_b(b, w, n):
    assert answers_needed(b, w) == n


def test_advice_names_the_number_of_answers_and_says_nothing_when_enough():
    noisy = {"between": 1.0, "within": 3.5, "share_unbiased": 1 / 4.5}
    line = baseline_advice(noisy, 1)
    assert "use the mean of at least 4 sampled answers (baseline_k=4 baseline_greedy=false)" in line
    assert baseline_advice(noisy, 8) is None
    assert "cannot lower" in baseline_advice({"between": 0.0, "within": 1.0, "share_unbiased": 0.0}, 8)
