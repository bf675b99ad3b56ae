"""Which response pairs a feedback round sends to annotators: candidate pairs and the selection methods.

A method is a pure function that ranks the candidate pairs (most wanted first) and one
:func:`register_selector` call; :func:`select_pairs` applies what every method shares (the budget, the
per-sample cap, the output order), so a new method cannot get those wrong. ``random`` is the control
for ``uncertainty`` (pairs scored by :func:`chatglm_rlhf.reward.ensemble.uncertainty`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.errors import ConfigError

Pair = tuple[int, int, int]  # (sample index, response i, response j) with i < j
# A method's ranking: (pairs, scores or None, seeded generator) -> pair positions, most wanted first.
Ranker = Callable[[Sequence[Pair], Sequence[float] | None, random.Random], list[int]]


@dataclass(frozen=True)
class Selector:
    name: str
    rank: Ranker
    help: str
    needs_scores: bool = False  # select_pairs checks that scores are given, one per pair, finite


SELECTORS: dict[str, Selector] = {}


def register_selector(name: str, help: str, needs_scores: bool = False) -> Callable[[Ranker], Ranker]:  # noqa: A002
    """Decorator: register ``rank`` as selection method ``name``."""

    def wrap(rank: Ranker) -> Ranker:
        SELECTORS[name] = Selector(name, rank, help, needs_scores)
        return rank

    return wrap


def candidate_pairs(samples: Sequence[DialogueSample]) -> list[Pair]:
    """Every ``(sample index, i, j)`` with ``i < j`` over each sample's responses, in order.

    Pairs of identical texts are skipped: two equal answers teach the reward model nothing, and the
    filter drops them anyway, so an annotator's time on them is wasted.
    """
    return [
        (s, i, j)
        for s, sample in enumerate(samples)
        for i in range(len(sample.responses))
        for j in range(i + 1, len(sample.responses))
        if sample.responses[i] != sample.responses[j]
    ]


@register_selector("random", help="a seeded uniform sample of the candidate pairs (the control)")
def rank_random(pairs: Sequence[Pair], scores: Sequence[float] | None, rng: random.Random) -> list[int]:
    order = list(range(len(pairs)))
    rng.shuffle(order)
    return order


@register_selector(
    "uncertainty",
    help="the pairs with the highest uncertainty score (e.g. the RM ensemble's entropy, disagreement or bald)",
    needs_scores=True,
)
def rank_uncertainty(pairs: Sequence[Pair], scores: Sequence[float] | None, rng: random.Random) -> list[int]:
    assert scores is not None  # select_pairs checked this (needs_scores)
    # Shuffle first, then a stable sort: equal scores (common: a saturated ensemble, rounded scores)
    # come out in seeded random order, not in file order, which would favour the first prompts.
    order = list(range(len(pairs)))
    rng.shuffle(order)
    order.sort(key=lambda k: -scores[k])
    return order


def _check_scores(pairs: Sequence[Pair], scores: Sequence[float] | None, method: str) -> None:
    if scores is None:
        raise ValueError(f"select method {method!r} needs one score per pair; none were given")
    if len(scores) != len(pairs):
        raise ValueError(f"select method {method!r}: {len(scores)} scores for {len(pairs)} pairs")
    bad = next((k for k, x in enumerate(scores) if not math.isfinite(x)), None)
    if bad is not None:
        raise ValueError(f"select method {method!r}: score {bad} is {scores[bad]}, not a finite number")


def select_pairs(
    pairs: Sequence[Pair],
    budget: int,
    method: str,
    scores: Sequence[float] | None = None,
    seed: int = 0,
    per_sample: int = 0,
) -> list[Pair]:
    """Up to ``budget`` of ``pairs`` chosen by ``method`` (a key of :data:`SELECTORS`), in input order.

    ``per_sample > 0`` takes at most that many pairs from one sample (so one confusing prompt cannot
    eat the budget); the cap holds even when the budget would cover every pair, so the result can be
    shorter than ``budget``. Pairs are returned in the order given (stable: files written from them
    diff well between rounds), not in the method's ranking.
    """
    if method not in SELECTORS:
        raise ConfigError(f"unknown select method {method!r} (choose from {', '.join(SELECTORS)})")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if per_sample < 0:
        raise ValueError(f"per_sample must be >= 0 (0 = no cap), got {per_sample}")
    selector = SELECTORS[method]
    if selector.needs_scores:
        _check_scores(pairs, scores, method)
    if budget >= len(pairs) and per_sample == 0:
        return list(pairs)
    order = selector.rank(pairs, scores, random.Random(seed))
    if sorted(order) != list(range(len(pairs))):
        # A method that drops or repeats a pair would bias the round silently; say so instead.
        raise ValueError(f"select method {method!r} must rank every pair exactly once")
    taken: list[int] = []
    per: dict[int, int] = {}
    for k in order:
        if len(taken) == budget:
            break
        s = pairs[k][0]
        if per_sample and per.get(s, 0) >= per_sample:
            continue
        per[s] = per.get(s, 0) + 1
        taken.append(k)
    return [pairs[k] for k in sorted(taken)]
