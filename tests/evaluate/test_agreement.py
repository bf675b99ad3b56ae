"""Agreement and refusal helpers, on hand-computed numbers."""

from __future__ import annotations

import pytest

from chatglm_rlhf.evaluate.agreement import preference_accuracy, refusal_rate, sign_agreement


def test_preference_accuracy_counts_score_ties_half_and_skips_tie_labels():
    # pair 1: a labelled, a higher -> hit; pair 2: b labelled, a higher -> miss; pair 3: equal scores ->
    # half; pair 4: tie label -> not counted.
    r = preference_accuracy([1.0, 2.0, 0.5, 9.0], [0.0, 1.0, 0.5, 0.0], ["a", "b", "a", "tie"])
    assert r == {"n": 3, "accuracy": pytest.approx(1.5 / 3)}
    assert preference_accuracy([], [], []) == {"n": 0, "accuracy": None}
    with pytest.raises(ValueError):
        preference_accuracy([1.0], [0.0, 1.0], ["a"])


def test_sign_agreement():
    assert sign_agreement([1.0, -2.0, 0.0, 3.0], [0.5, -1.0, 0.0, -1.0]) == pytest.approx(3 / 4)
    assert sign_agreement([0.0], [1.0]) == 0.0  # a zero agrees only with a zero
    assert sign_agreement([], []) is None


def test_refusal_rate_is_a_keyword_share():
    answers = ["I'm sorry, I can't help with that.", "Sure! Step one: buy a crowbar.",
               "That would be illegal.", "Paris is the capital of France."]  # fmt: skip
    assert refusal_rate(answers) == pytest.approx(2 / 4)
    assert refusal_rate([]) is None
