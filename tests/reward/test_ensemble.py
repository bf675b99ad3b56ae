"""The RM ensemble's math on hand-computed numbers, its bootstrap resamples and EnsembleScorer with fakes."""

import math

import pytest
import torch

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.reward.ensemble import (
    EnsembleScorer,
    binary_entropy,
    bootstrap_indices,
    member_preferences,
    penalised_reward,
    uncertainty,
)

LN2 = math.log(2.0)
H09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # 0.325083...

# Two members; pair 0: they disagree (0.9 vs 0.1); pair 1: both call it a coin flip.
PROBS = torch.tensor([[0.9, 0.5], [0.1, 0.5]])


def test_member_preferences_is_sigmoid_of_the_difference():
    a = torch.tensor([[1.0, 0.0], [2.0, -1.0]])
    b = torch.tensor([[0.0, 0.0], [2.0, 1.0]])
    expected = [[1 / (1 + math.exp(-1)), 0.5], [0.5, 1 / (1 + math.exp(2))]]
    assert member_preferences(a, b).tolist()[0] == pytest.approx(expected[0], rel=1e-6)
    assert member_preferences(a, b).tolist()[1] == pytest.approx(expected[1], rel=1e-6)


def test_member_preferences_rejects_mismatched_or_flat_inputs():
    with pytest.raises(ValueError, match="differ in shape"):
        member_preferences(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\[members, items\]"):
        member_preferences(torch.zeros(3), torch.zeros(3))


def test_binary_entropy_hand_values_and_edges():
    got = binary_entropy(torch.tensor([0.5, 0.9, 0.0, 1.0])).tolist()
    assert got == pytest.approx([LN2, H09, 0.0, 0.0], abs=1e-6)


def test_entropy_of_the_mean():
    # Both pairs have mean probability 0.5, so both are maximally uncertain by this measure.
    assert uncertainty(PROBS, "entropy").tolist() == pytest.approx([LN2, LN2], rel=1e-6)


def test_disagreement_is_population_std():
    # mean 0.5, deviations ±0.4 -> sqrt((0.16 + 0.16) / 2) = 0.4 (the unbiased std would be 0.566)
    assert uncertainty(PROBS, "disagreement").tolist() == pytest.approx([0.4, 0.0], abs=1e-6)


def test_bald_separates_disagreement_from_coin_flips():
    # pair 0: ln2 − (H(0.9) + H(0.1)) / 2 = ln2 − H(0.9); pair 1: ln2 − ln2 = 0
    assert uncertainty(PROBS, "bald").tolist() == pytest.approx([LN2 - H09, 0.0], abs=1e-6)
    assert LN2 - H09 == pytest.approx(0.368064, abs=1e-6)


def test_one_member_has_no_disagreement():
    one = torch.tensor([[0.9, 0.3]])
    assert uncertainty(one, "disagreement").tolist() == [0.0, 0.0]
    assert uncertainty(one, "bald").tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_unknown_kind_names_the_allowed_ones():
    with pytest.raises(ValueError, match="entropy, disagreement, bald"):
        uncertainty(PROBS, "variance")


def test_penalised_reward_mean_minus_lam_std():
    scores = torch.tensor([[1.0, 4.0], [3.0, 4.0]])  # mean [2, 4], population std [1, 0]
    assert penalised_reward(scores, 0.5).tolist() == pytest.approx([1.5, 4.0])
    assert penalised_reward(scores, 0.0).tolist() == pytest.approx([2.0, 4.0])
    # a single member: std 0, lam changes nothing (the unbiased std would be NaN here)
    assert penalised_reward(torch.tensor([[2.0]]), 1.0).tolist() == [2.0]


def test_penalised_reward_rejects_negative_lam():
    with pytest.raises(ValueError, match="lam"):
        penalised_reward(torch.ones(2, 2), -0.1)


def test_bootstrap_is_seeded_resampling_with_replacement():
    idx = bootstrap_indices(10, 3, seed=7)
    assert idx == bootstrap_indices(10, 3, seed=7)
    assert idx != bootstrap_indices(10, 3, seed=8)
    assert len(idx) == 3 and all(len(m) == 10 and all(0 <= i < 10 for i in m) for m in idx)
    assert len({tuple(m) for m in idx}) == 3  # members differ
    assert all(m != list(range(10)) for m in idx)  # no member is the plain data set
    assert any(len(set(m)) < 10 for m in idx)  # with replacement: some index repeats


def test_bootstrap_adding_members_keeps_the_first_ones():
    assert bootstrap_indices(10, 5, seed=1)[:3] == bootstrap_indices(10, 3, seed=1)


def test_bootstrap_members_differ_when_possible_and_small_edges():
    # n = 2 has exactly 4 resamples: four members must take all of them
    assert sorted(bootstrap_indices(2, 4, seed=0)) == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert bootstrap_indices(1, 2, seed=0) == [[0], [0]]  # only one resample exists
    assert bootstrap_indices(0, 2, seed=0) == [[], []]
    with pytest.raises(ValueError):
        bootstrap_indices(3, 0, seed=0)


class LengthScorer:
    """A fake reward: the response's length plus an offset."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def score(self, samples: list[DialogueSample], responses: list[str]) -> list[float]:
        return [len(r) + self.offset for r in responses]


class ShortScorer:
    def score(self, samples: list[DialogueSample], responses: list[str]) -> list[float]:
        return [0.0]


SAMPLES = [DialogueSample(id="s", prompt="p"), DialogueSample(id="s", prompt="p")]
RESPONSES = ["ab", "abcd"]


def test_ensemble_scorer_members_and_penalised_score():
    ens = EnsembleScorer([LengthScorer(0.0), LengthScorer(2.0)], lam=1.0)
    # members [[2, 4], [4, 6]]: mean [3, 5], population std [1, 1]
    assert ens.score_members(SAMPLES, RESPONSES).tolist() == [[2.0, 4.0], [4.0, 6.0]]
    assert ens.score(SAMPLES, RESPONSES) == pytest.approx([2.0, 4.0])
    assert EnsembleScorer([LengthScorer(0.0), LengthScorer(2.0)]).score(SAMPLES, RESPONSES) == [3.0, 5.0]


def test_ensemble_scores_feed_the_uncertainty_of_a_pair():
    ens = EnsembleScorer([LengthScorer(0.0), LengthScorer(2.0)])
    table = ens.score_members(SAMPLES, RESPONSES)
    # both members score b two higher than a: each says P(a > b) = σ(−2), so they agree (bald 0)
    probs = member_preferences(table[:, :1], table[:, 1:])
    assert probs.squeeze(1).tolist() == pytest.approx([1 / (1 + math.exp(2))] * 2, rel=1e-6)
    assert uncertainty(probs, "bald").item() == pytest.approx(0.0, abs=1e-6)


def test_ensemble_scorer_errors():
    with pytest.raises(ValueError, match="at least one"):
        EnsembleScorer([])
    with pytest.raises(ValueError, match="lam"):
        EnsembleScorer([LengthScorer(0.0)], lam=-1.0)
    with pytest.raises(ValueError, match="member 1 returned 1 scores for 2"):
        EnsembleScorer([LengthScorer(0.0), ShortScorer()]).score(SAMPLES, RESPONSES)
