import pytest

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.reward.scale import ScaledScorer, calibration_pairs, match_scale, std_ratio


class Table:
    """A scorer that looks each response up in a dict."""

    def __init__(self, scores):
        self.scores = scores

    def score(self, samples, responses):
        return [self.scores[r] for r in responses]


def test_std_ratio_by_hand():
    # pstdev([0, 2]) = 1, pstdev([0, 0.5]) = 0.25 -> factor 4; a constant shift changes nothing.
    assert std_ratio([0.0, 2.0], [0.0, 0.5]) == pytest.approx(4.0)
    assert std_ratio([10.0, 12.0], [3.0, 3.5]) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        std_ratio([1.0, 2.0], [1.0])
    assert std_ratio([1.0, 2.0], [0.5, 0.5]) is None  # no factor spreads a constant


def test_match_scale_gives_the_reference_spread_and_keeps_the_order():
    samples = [DialogueSample(id=str(i), prompt="p", responses=["a", "b", "c"]) for i in range(2)]
    s, r = calibration_pairs(samples, limit=5)
    assert r == ["a", "b", "c", "a", "b"] and len(s) == 5  # the limit cuts in order
    gold, rm = Table({"a": 0.0, "b": 0.5, "c": 1.0}), Table({"a": -2.0, "b": 0.0, "c": 2.0})
    scaled, info = match_scale(gold, rm, *calibration_pairs(samples, limit=6))
    assert info["scale"] == pytest.approx(4.0) and info["n"] == 6
    assert info["reference_std"] == pytest.approx(4.0 * info["scorer_std"])
    assert scaled.score(s[:3], ["c", "a", "b"]) == pytest.approx([4.0, 0.0, 2.0])
    assert isinstance(scaled, ScaledScorer) and scaled.scorer is gold


def test_a_constant_scorer_keeps_scale_one_and_says_so():
    samples = [DialogueSample(id="0", prompt="p", responses=["a", "b"])]
    scaled, info = match_scale(
        Table({"a": 0.4, "b": 0.4}), Table({"a": -1.0, "b": 1.0}), *calibration_pairs(samples, 9)
    )
    assert info["scale"] == 1.0 and "same score" in info["note"]
    assert scaled.score(samples, ["a"]) == [0.4]
