"""Candidate pairs and the selection methods on hand-built pairs and scores."""

import pytest

from chatglm_rlhf.collect import select
from chatglm_rlhf.collect.select import SELECTORS, candidate_pairs, register_selector, select_pairs
from chatglm_rlhf.data.schema import DialogueSample

# Sample 0 has three pairs, samples 1 and 2 one each.
PAIRS = [(0, 0, 1), (0, 0, 2), (0, 1, 2), (1, 0, 1), (2, 0, 1)]
SCORES = [0.9, 0.8, 0.7, 0.1, 0.2]


def test_candidate_pairs_skip_identical_texts_and_single_responses():
    samples = [
        DialogueSample(id="a", prompt="p", responses=["x", "y", "x"]),
        DialogueSample(id="b", prompt="p", responses=["only"]),
        DialogueSample(id="c", prompt="p", responses=["u", "v"]),
        DialogueSample(id="d", prompt="p"),
    ]
    assert candidate_pairs(samples) == [(0, 0, 1), (0, 1, 2), (2, 0, 1)]


def test_uncertainty_takes_the_highest_scores_in_input_order():
    got = select_pairs(PAIRS, 2, "uncertainty", scores=[0.1, 0.9, 0.5, 0.7, 0.3])
    assert got == [(0, 0, 2), (1, 0, 1)]


def test_uncertainty_ties_are_broken_by_the_seed_not_the_position():
    chosen = {tuple(select_pairs(PAIRS, 1, "uncertainty", scores=[0.5] * 5, seed=s)) for s in range(20)}
    assert len(chosen) > 1  # not always the first pair
    once = select_pairs(PAIRS, 2, "uncertainty", scores=[0.5] * 5, seed=3)
    assert once == select_pairs(PAIRS, 2, "uncertainty", scores=[0.5] * 5, seed=3)


def test_random_is_seeded_subset_in_input_order():
    got = select_pairs(PAIRS, 3, "random", seed=5)
    assert got == select_pairs(PAIRS, 3, "random", seed=5)
    assert len(got) == 3 and set(got) <= set(PAIRS)
    assert got == sorted(got, key=PAIRS.index)
    assert len({tuple(select_pairs(PAIRS, 3, "random", seed=s)) for s in range(20)}) > 1


def test_per_sample_cap_keeps_one_sample_from_eating_the_budget():
    # Sample 0 holds the three most uncertain pairs; the cap passes the budget on to the others.
    assert select_pairs(PAIRS, 3, "uncertainty", scores=SCORES) == PAIRS[:3]
    assert select_pairs(PAIRS, 3, "uncertainty", scores=SCORES, per_sample=1) == [
        (0, 0, 1),
        (1, 0, 1),
        (2, 0, 1),
    ]
    assert select_pairs(PAIRS, 3, "uncertainty", scores=SCORES, per_sample=2) == [
        (0, 0, 1),
        (0, 0, 2),
        (2, 0, 1),
    ]
    for s in range(10):
        got = select_pairs(PAIRS, 4, "random", seed=s, per_sample=1)
        assert sorted(p[0] for p in got) == [0, 1, 2]  # at most one per sample, so only 3 fit


def test_budget_edges():
    assert select_pairs(PAIRS, 5, "random") == PAIRS
    assert select_pairs(PAIRS, 99, "uncertainty", scores=SCORES) == PAIRS
    assert select_pairs(PAIRS, 0, "random") == []
    assert select_pairs([], 3, "uncertainty", scores=[]) == []
    # the cap still holds when the budget covers every pair
    capped = select_pairs(PAIRS, 99, "random", per_sample=1)
    assert [p[0] for p in capped] == [0, 1, 2] and capped[1:] == [(1, 0, 1), (2, 0, 1)]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="random, uncertainty"):
        select_pairs(PAIRS, 2, "greedy")
    with pytest.raises(ValueError, match="budget"):
        select_pairs(PAIRS, -1, "random")
    with pytest.raises(ValueError, match="per_sample"):
        select_pairs(PAIRS, 2, "random", per_sample=-1)
    with pytest.raises(ValueError, match="none were given"):
        select_pairs(PAIRS, 2, "uncertainty")
    with pytest.raises(ValueError, match="4 scores for 5 pairs"):
        select_pairs(PAIRS, 2, "uncertainty", scores=SCORES[:4])
    with pytest.raises(ValueError, match="score 1 is nan"):
        select_pairs(PAIRS, 2, "uncertainty", scores=[0.1, float("nan"), 0.2, 0.3, 0.4])


def test_selectors_are_registered_with_help():
    assert set(SELECTORS) >= {"random", "uncertainty"}
    assert all(sel.help for sel in SELECTORS.values())
    assert SELECTORS["uncertainty"].needs_scores and not SELECTORS["random"].needs_scores


def test_a_new_method_is_one_function_and_one_registration(monkeypatch):
    monkeypatch.setattr(select, "SELECTORS", dict(SELECTORS))

    @register_selector("last_first", help="the last pairs first")
    def rank_last(pairs, scores, rng):
        return list(range(len(pairs)))[::-1]

    assert select_pairs(PAIRS, 2, "last_first") == [(1, 0, 1), (2, 0, 1)]
    assert select_pairs(PAIRS, 2, "last_first", per_sample=1) == [(1, 0, 1), (2, 0, 1)]
    assert select_pairs(PAIRS, 3, "last_first", per_sample=1) == [(0, 1, 2), (1, 0, 1), (2, 0, 1)]


def test_a_method_that_drops_a_pair_is_an_error(monkeypatch):
    monkeypatch.setattr(select, "SELECTORS", dict(SELECTORS))
    register_selector("broken", help="ranks only the first pair")(lambda pairs, scores, rng: [0])
    with pytest.raises(ValueError, match="every pair exactly once"):
        select_pairs(PAIRS, 2, "broken")
