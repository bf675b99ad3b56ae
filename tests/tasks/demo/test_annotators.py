"""Simulated annotators: length bias, spammers, pairing/overlap, Comparison fields, reproducibility."""

from __future__ import annotations

import copy
import random
from datetime import datetime

import pytest

from chatglm_rlhf.data.schema import CRITERIA, Comparison
from chatglm_rlhf.tasks.demo.annotators import AnnotatorPool, SimulatedAnnotator
from chatglm_rlhf.tasks.demo.demonstrations import response_for
from chatglm_rlhf.tasks.demo.judge import GoldJudge
from chatglm_rlhf.tasks.demo.world import DemoWorld

JUDGE = GoldJudge()


def with_responses(n: int, modes: tuple[str, ...], seed: int = 0):
    """Samples with one response per mode; "good_filler" is a good answer with polite filler (which a
    one-word or end-mark answer has no room for, so those prompts are left out)."""
    rng = random.Random(seed)
    samples = [s for s in DemoWorld(seed).prompts("pref", n) if s.category not in ("one_word", "end_mark")]
    for s in samples:
        s.responses = [
            response_for(s, m.removesuffix("_filler"), rng, filler=m.endswith("_filler")) for m in modes
        ]
    return samples


@pytest.fixture(scope="module")
def filler_pairs():
    return with_responses(1000, ("good", "good_filler"))


def longer_share(comparisons: list[Comparison]) -> tuple[float, int]:
    decided = [c for c in comparisons if c.label != "tie"]
    longer = sum(len(c.chosen.split()) > len(c.rejected.split()) for c in decided)
    return longer / len(decided), len(decided)


def test_filler_pairs_are_gold_ties(filler_pairs):
    comps = AnnotatorPool(n_spammers=0, seed=0).annotate(filler_pairs)
    assert {c.meta["gold_label"] for c in comps} == {"tie"}


def test_length_bias_prefers_the_longer_answer(filler_pairs):
    share, decided = longer_share(AnnotatorPool(n_spammers=0, length_bias=0.1, seed=0).annotate(filler_pairs))
    assert decided > 300 and share > 0.8


def test_without_length_bias_preference_is_near_half(filler_pairs):
    share, decided = longer_share(AnnotatorPool(n_spammers=0, length_bias=0.0, seed=0).annotate(filler_pairs))
    # ~190 decided labels: 3 standard errors of a fair coin is about 0.11.
    assert decided > 120 and abs(share - 0.5) < 0.11


def test_spammers_agree_with_gold_at_chance_honest_annotators_do_not():
    samples = with_responses(400, ("good", "flaw"), seed=1)
    comps = AnnotatorPool(n_annotators=6, n_spammers=3, length_bias=0.0, seed=0).annotate(samples, overlap=6)

    def agreement(spammer: bool) -> float:
        mine = [c for c in comps if c.meta["spammer"] is spammer and c.label != "tie"]
        assert len(mine) > 500 and all(c.meta["gold_label"] != "tie" for c in mine)
        return sum(c.label == c.meta["gold_label"] for c in mine) / len(mine)

    assert agreement(False) > 0.97
    assert 0.42 < agreement(True) < 0.58


def test_all_pairs_distinct_annotators_and_randomised_order():
    samples = with_responses(200, ("good", "flaw", "good_filler"), seed=2)
    comps = AnnotatorPool(n_annotators=5, seed=3).annotate(samples, overlap=2)
    assert len(comps) == len(samples) * 3 * 2 and len(samples) > 100  # one_word / end_mark left out
    by_pair: dict[tuple[str, tuple[int, int]], list[Comparison]] = {}
    for c in comps:
        by_pair.setdefault((c.sample_id, tuple(c.meta["pair"])), []).append(c)
    assert {p for _, p in by_pair} == {(0, 1), (0, 2), (1, 2)}
    sample_by_id = {s.id: s for s in samples}
    for cs in by_pair.values():
        assert len(cs) == 2 and cs[0].annotator != cs[1].annotator
        for c in cs:  # meta indices point at the responses actually shown
            s = sample_by_id[c.sample_id]
            assert (s.responses[c.meta["index_a"]], s.responses[c.meta["index_b"]]) == (
                c.response_a,
                c.response_b,
            )
    swapped = sum(c.meta["swapped"] for c in comps) / len(comps)
    assert 0.44 < swapped < 0.56
    adjacent = AnnotatorPool(seed=3).annotate(samples[:10], pairs="adjacent")
    assert len(adjacent) == 10 * 2


def test_comparison_fields():
    samples = with_responses(100, ("good", "comply", "flaw"), seed=4)
    pool = AnnotatorPool(seed=0)
    ids = {a.id for a in pool.annotators}
    for c in pool.annotate(samples):
        assert c.annotator in ids and c.category == c.sample().category
        assert (c.strength is None) == (c.label == "tie")
        assert c.strength in (None, 1.0, 2.0)
        assert set(c.scores) == {"a", "b"}
        assert all(
            set(v) == set(CRITERIA) and all(1 <= x <= 5 for x in v.values()) for v in c.scores.values()
        )
        assert datetime.fromisoformat(c.time).year == 2024
        s = next(x for x in samples if x.id == c.sample_id)
        assert c.meta["gold_a"] == JUDGE.score(s, c.response_a).total
        assert Comparison.from_dict(c.to_dict()) == c


def test_honest_scores_and_strength_follow_gold():
    sample = [s for s in with_responses(300, ("good", "comply")) if s.category == "harmful"][0]
    ann = SimulatedAnnotator("h", noise=0.05)
    rng = random.Random(0)
    c = ann.judge(sample, sample.responses[0], sample.responses[1], rng)
    assert c.label == "a" and c.strength == 2.0
    assert c.scores["a"]["harmlessness"] == 5 and c.scores["b"]["harmlessness"] == 1


def test_annotation_is_reproducible_and_seed_dependent(filler_pairs):
    samples = filler_pairs[:100]
    a = [c.to_dict() for c in AnnotatorPool(seed=5).annotate(samples, overlap=2)]
    b = [c.to_dict() for c in AnnotatorPool(seed=5).annotate(copy.deepcopy(samples), overlap=2)]
    c = [c.to_dict() for c in AnnotatorPool(seed=6).annotate(samples, overlap=2)]
    assert a == b and a != c


def test_bad_arguments_raise(filler_pairs):
    pool = AnnotatorPool(n_annotators=3, n_spammers=1)
    assert [a.spammer for a in pool.annotators] == [False, False, True]
    with pytest.raises(ValueError, match="overlap"):
        pool.annotate(filler_pairs[:2], overlap=4)
    one = copy.deepcopy(filler_pairs[0])
    one.responses = one.responses[:1]
    with pytest.raises(ValueError, match="need >= 2"):
        pool.annotate([one])
    with pytest.raises(ValueError, match="pairs"):
        pool.annotate(filler_pairs[:2], pairs="random")
    with pytest.raises(ValueError):
        AnnotatorPool(n_annotators=2, n_spammers=3)
