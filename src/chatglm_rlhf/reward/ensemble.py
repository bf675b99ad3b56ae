"""A reward-model ensemble: its members' preferences, how uncertain they are, and a pessimistic reward.

Feedback rounds send humans the pairs the ensemble is least sure about (``select=uncertainty`` in
:mod:`chatglm_rlhf.collect.select`), and RL can train on ``mean − λ·std`` so that the policy is not paid
for answers only some members like. The math is small pure functions on tensors of shape
``[M members, N items]``, each tested on hand-computed numbers; :class:`EnsembleScorer` only stacks its
members' scores and calls them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.reward.protocol import Scorer

UNCERTAINTY_KINDS = ("entropy", "disagreement", "bald")


def _check_members(t: torch.Tensor, name: str) -> None:
    if t.dim() != 2 or t.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape [members, items] with at least one member, got {list(t.shape)}"
        )


def member_preferences(scores_a: torch.Tensor, scores_b: torch.Tensor) -> torch.Tensor:
    """Each member's Bradley–Terry probability that response a beats b: ``σ(s_a − s_b)``, ``[M, N]``."""
    if scores_a.shape != scores_b.shape:
        raise ValueError(
            f"scores_a {list(scores_a.shape)} and scores_b {list(scores_b.shape)} differ in shape"
        )
    _check_members(scores_a, "scores_a")
    return torch.sigmoid(scores_a.float() - scores_b.float())


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """``H(p) = −p·ln p − (1−p)·ln(1−p)`` in nats, elementwise; 0 at p = 0 and p = 1 (xlogy, not NaN)."""
    p = p.float()
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1.0 - p, 1.0 - p))


def uncertainty(probs: torch.Tensor, kind: str) -> torch.Tensor:
    """How unsure the ensemble is about each pair, ``[M, N] -> [N]``; larger = ask a human first.

    - ``entropy``: ``H(mean_m p_m)``: the ensemble's averaged prediction is near 0.5. High both when
      members agree that the pair is a coin flip and when they disagree.
    - ``disagreement``: the population std of ``p_m`` over members: only the members' disagreement.
    - ``bald``: ``H(mean_m p_m) − mean_m H(p_m)``, the mutual information between the label and the
      member (epistemic uncertainty): high only when each member is confident but they disagree, so a
      pair that every member calls a coin flip (noise a label will not remove) scores 0.
    """
    _check_members(probs, "probs")
    p = probs.float()
    if kind == "entropy":
        return binary_entropy(p.mean(0))
    if kind == "disagreement":
        return p.std(0, correction=0)
    if kind == "bald":
        # Jensen makes this ≥ 0 in exact arithmetic; clamp the float rounding below zero away.
        return (binary_entropy(p.mean(0)) - binary_entropy(p).mean(0)).clamp(min=0.0)
    raise ConfigError(f"unknown uncertainty kind {kind!r} (choose from {', '.join(UNCERTAINTY_KINDS)})")


def penalised_reward(scores: torch.Tensor, lam: float) -> torch.Tensor:
    """The pessimistic reward ``mean − lam·std`` over members, ``[M, N] -> [N]``; ``lam = 0``: the mean.

    The std is the population std (``correction=0``): with the 2-5 members an ensemble has, the
    unbiased (M−1) estimator would inflate the penalty by up to √2 at M = 2 and is NaN at M = 1, while we
    want the spread of the scores we actually have (0 for a single member, so ``lam`` then changes
    nothing). It is the same std that ``uncertainty(kind="disagreement")`` takes.
    """
    _check_members(scores, "scores")
    if lam < 0:
        # A negative lam would pay the policy for answers the members disagree on: an invitation to
        # find the reward models' blind spots, not the pessimism this is for.
        raise ValueError(f"lam must be >= 0, got {lam}")
    s = scores.float()
    return s.mean(0) - lam * s.std(0, correction=0)


def bootstrap_indices(n: int, members: int, seed: int) -> list[list[int]]:
    """Each member's training set: ``n`` draws with replacement from ``range(n)``, deterministic per seed.

    Member ``m`` draws from its own generator (seeded by ``seed`` and ``m``), so an ensemble of 5 shares
    its first 3 members' data with an ensemble of 3 of the same seed. A draw equal to an earlier
    member's is redrawn while other resamples exist (``n**n`` of them), so members differ whenever
    that is possible (n ≥ 2 and few enough members). No member is kept on the plain data set: each sees
    its own resample, which is where the ensemble's disagreement comes from.
    """
    if n < 0 or members < 1:
        raise ValueError(f"need n >= 0 and members >= 1, got n={n}, members={members}")
    # n**n distinct resamples; past 8 it exceeds any sensible ensemble, so skip the big power.
    distinct = n**n if n <= 8 else None
    out: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    for m in range(members):
        # A string seed is hashed with SHA-512 by random.Random: the same draws in every process.
        rng = random.Random(f"bootstrap:{seed}:{m}")
        draw = [rng.randrange(n) for _ in range(n)]
        while tuple(draw) in seen and (distinct is None or len(seen) < distinct):
            draw = [rng.randrange(n) for _ in range(n)]
        seen.add(tuple(draw))
        out.append(draw)
    return out


class EnsembleScorer:
    """Scores with every member and reports ``mean − lam·std`` (a :class:`Scorer`, usable as an RL reward).

    ``score_members`` gives the raw ``[M, N]`` table for the uncertainty functions above.
    """

    def __init__(self, members: Sequence[Scorer], lam: float = 0.0) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member scorer")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        self.members = list(members)
        self.lam = lam

    def score_members(self, samples: list[DialogueSample], responses: list[str]) -> torch.Tensor:
        """Every member's scores, ``[M members, N responses]`` (float32)."""
        rows = []
        for i, member in enumerate(self.members):
            row = [float(x) for x in member.score(samples, responses)]
            if len(row) != len(responses):
                raise ValueError(
                    f"ensemble member {i} returned {len(row)} scores for {len(responses)} responses"
                )
            rows.append(row)
        return torch.tensor(rows, dtype=torch.float32).reshape(len(self.members), len(responses))

    def score(self, samples: list[DialogueSample], responses: list[str]) -> list[float]:
        return penalised_reward(self.score_members(samples, responses), self.lam).tolist()
