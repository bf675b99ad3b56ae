"""Agreement and refusal helpers, on hand-computed numbers."""

from __future__ import annotations

import pytest

from chatglm_rlhf.evaluate.agreement import preference_accuracy, sign_agreement, wilson_interval
from chatglm_rlhf.evaluate.refusal import refusal_rate


def test_preference_accuracy_counts_score_ties_half_and_skips_tie_labels():
    # pair 1: a labelled, a higher -> hit; pair 2: b labelled, a higher -> miss; pair 3: equal scores ->
    # half; pair 4: tie label -> not counted.
    r = preference_accuracy([1.0, 2.0, 0.5, 9.0], [0.0, 1.0, 0.5, 0.0], ["a", "b", "a", "tie"])
    assert r["n"] == 3 and r["accuracy"] == pytest.approx(1.5 / 3)
    assert r["ci95"] == pytest.approx(wilson_interval(1.5, 3))
    assert preference_accuracy([], [], []) == {"n": 0, "accuracy": None}
    with pytest.raises(ValueError):
        preference_accuracy([1.0], [0.0, 1.0], ["a"])


def test_wilson_interval_by_hand():
    # 60 of 100: p = 0.6, z^2 = 3.8416; centre (0.6 + 0.019208) / 1.038416 = 0.596301, half-width
    # 1.96 * sqrt(0.0024 + 0.00009604) / 1.038416 = 0.094300 -> [0.5020, 0.6906]
    lo, hi = wilson_interval(60, 100)
    assert lo == pytest.approx(0.50200, abs=1e-5) and hi == pytest.approx(0.69060, abs=1e-5)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_sign_agreement():
    assert sign_agreement([1.0, -2.0, 0.0, 3.0], [0.5, -1.0, 0.0, -1.0]) == pytest.approx(3 / 4)
    assert sign_agreement([0.0], [1.0]) == 0.0  # a zero agrees only with a zero
    assert sign_agreement([], []) is None


def test_refusal_rate_is_a_keyword_share():
    answers = ["I'm sorry, I can't help with that.", "Sure! Step one: buy a crowbar.",
               "That would be illegal.", "Paris is the capital of France."]  # fmt: skip
    assert refusal_rate(answers) == pytest.approx(2 / 4)
    assert refusal_rate([]) is None


def test_majority_verdict_needs_more_judges_on_one_side():
    from chatglm_rlhf.evaluate.agreement import majority_verdict

    assert majority_verdict(["a", "a"]) == "a"
    assert majority_verdict(["a", "b"]) == "tie"  # two judges split: no win for either
    assert majority_verdict(["a", "tie"]) == "a"
    assert majority_verdict(["b", "b", "a"]) == "b"
    assert majority_verdict(["tie", "tie"]) == "tie"


def test_ensemble_by_hand():
    from chatglm_rlhf.evaluate.agreement import ensemble, verdict_agreement

    j1 = ["a", "a", "b", "tie"]
    j2 = ["a", "b", "b", "a"]
    j3 = ["a", "a", "a", "tie"]
    assert verdict_agreement(j1, j2) == 0.5 and verdict_agreement([], []) is None
    e = ensemble({"j1": j1, "j2": j2, "j3": j3})
    # pair 1: a,a,a -> a; pair 2: a,b,a -> a; pair 3: b,b,a -> b; pair 4: tie,a,tie -> a (1 a vs 0 b)
    assert e["verdicts"] == ["a", "a", "b", "a"]
    assert e["pairwise_agreement"] == {"j1|j2": 0.5, "j1|j3": 0.75, "j2|j3": 0.25}
    assert e["all_agree"] == 0.25
