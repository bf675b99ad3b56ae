"""Bucket-based length balancing (the paper's defence against a reward model that learns "longer is better").

Pairs are bucketed by the length difference of their two responses. Within each bucket, the pairs where
the longer response won and those where the shorter one won are equalised, either by down-sampling the
larger side (default) or by re-weighting both sides so that each carries half of the bucket's weight.
Pairs of equal length (difference 0) have no "longer" side and are left alone, as are ties.
"""

from __future__ import annotations

import random
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Balance = Literal["none", "downsample", "reweight"]  # FilterConfig.balance
BalanceWithin = Literal["all", "slight", "strength"]  # FilterConfig.balance_within
BALANCE_WITHIN = typing.get_args(BalanceWithin)
METHODS = typing.get_args(Balance)


def bucket_of(diff: int, edges: Sequence[int]) -> str:
    """Bucket label of an absolute length difference: ``"0"`` or ``"[lo,hi)"`` / ``">=lo"`` from edges.

    ``edges`` are increasing lower bounds >= 1, e.g. ``[1, 3, 10]`` → ``[1,3)``, ``[3,10)``, ``>=10``.
    A difference below the first edge (but above 0) falls into ``[1,edges[0])``.
    """
    if diff <= 0:
        return "0"
    bounds = [1, *[e for e in edges if e > 1]]
    for lo, hi in zip(bounds, bounds[1:]):
        if lo <= diff < hi:
            return f"[{lo},{hi})"
    return f">={bounds[-1]}"


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """All bucket labels in increasing order (for stable tables)."""
    bounds = [1, *[e for e in edges if e > 1]]
    return ["0", *[f"[{lo},{hi})" for lo, hi in zip(bounds, bounds[1:])], f">={bounds[-1]}"]


@dataclass
class BucketRow:
    bucket: str
    n_before: int
    longer_before: int
    n_after: float  # a float: with re-weighting it is the total weight
    longer_after: float

    @property
    def rate_before(self) -> float | None:
        # Equal-length pairs have no longer side: no rate.
        return self.longer_before / self.n_before if self.n_before and self.bucket != "0" else None

    @property
    def rate_after(self) -> float | None:
        return self.longer_after / self.n_after if self.n_after and self.bucket != "0" else None

    def to_dict(self) -> dict:
        return {
            "bucket": self.bucket,
            "n_before": self.n_before,
            "longer_wins_before": self.rate_before,
            "n_after": self.n_after,
            "longer_wins_after": self.rate_after,
        }


def balance(
    lengths: Sequence[tuple[int, int]],
    edges: Sequence[int],
    method: str = "downsample",
    seed: int = 0,
    strata: Sequence[str | None] | None = None,
) -> tuple[list[float], list[BucketRow]]:
    """Weights per pair (0 = drop, 1 = keep, other = re-weighted) and the per-bucket table.

    ``lengths[i] = (len_chosen, len_rejected)`` in tokens. With ``downsample`` the kept pairs of the
    larger side are a seeded random sample of size ``min(n_longer, n_shorter)``; with ``reweight`` each
    side's weights sum to half the bucket size, so the total weight of the bucket is unchanged.
    ``strata[i]`` puts pair i in a group balanced on its own (rows labelled "<group> <bucket>"); None
    leaves it out of every bucket (weight 1, in no row). See :func:`strength_strata`.
    """
    if method not in METHODS:
        raise ValueError(f"balance method must be one of {METHODS}, got {method!r}")
    weights = [1.0] * len(lengths)
    labels = [""] * len(lengths) if strata is None else list(strata)
    rng = random.Random(seed)
    rows: list[BucketRow] = []
    for group in sorted({g for g in labels if g is not None}):
        members = [i for i, g in enumerate(labels) if g == group]
        rows += _balance_group(members, lengths, edges, method, rng, weights, f"{group} " if group else "")
    return weights, rows


def _balance_group(members: list[int], lengths: Sequence[tuple[int, int]], edges: Sequence[int], method: str,
                   rng: random.Random, weights: list[float], prefix: str) -> list[BucketRow]:  # fmt: skip
    """Balance the pairs ``members`` in place (``weights``); their bucket rows."""
    sides: dict[str, tuple[list[int], list[int]]] = {b: ([], []) for b in bucket_labels(edges)}
    for i in members:
        lc, lr = lengths[i]
        b = bucket_of(abs(lc - lr), edges)
        if b != "0":
            sides[b][0 if lc > lr else 1].append(i)
    n_equal = sum(lengths[i][0] == lengths[i][1] for i in members)
    rows = [BucketRow(prefix + "0", n_equal, 0, n_equal, 0)]
    for b, (longer, shorter) in sides.items():
        n, label = len(longer) + len(shorter), prefix + b
        if b == "0":
            continue
        if method == "none" or n == 0:
            rows.append(BucketRow(label, n, len(longer), n, len(longer)))
            continue
        if method == "downsample":
            k = min(len(longer), len(shorter))
            for side in (longer, shorter):
                for i in side:
                    weights[i] = 0.0
                for i in rng.sample(side, k):
                    weights[i] = 1.0
            rows.append(BucketRow(label, n, len(longer), 2 * k, k))
        else:
            for side in (longer, shorter):
                for i in side:
                    # An empty other side leaves nothing to balance against: that side keeps weight 1.
                    other = shorter if side is longer else longer
                    weights[i] = n / (2 * len(side)) if other else 1.0
            after_long = sum(weights[i] for i in longer)
            rows.append(
                BucketRow(label, n, len(longer), after_long + sum(weights[i] for i in shorter), after_long)
            )
    return rows


SLIGHT = 1.5  # mean strength below this: "slightly better" (1 = slightly, 2 = much better)


def strength_strata(strengths: Sequence[float | None], within: str) -> list[str | None] | None:
    """The groups ``balance_within`` balances separately: all (one group: the paper), slight (only the
    slight preferences, mean strength < 1.5, and pairs without a strength; clear ones left alone) or
    strength (slight and clear preferences each balanced on their own).

    Why: a rater's taste for the longer answer acts where the two answers are about equally good, while a
    clear preference follows quality and may rightly favour the shorter answer (a one-word task). Balancing
    every pair at once evens the *marginal* rate, which two opposite groups can already have, and leaves
    the bias in place. Data without strengths falls in one group (the paper's buckets).
    """
    if within == "all":
        return None
    slight = ["slight" if s is None or s < SLIGHT else "clear" for s in strengths]
    if within == "slight":
        return [g if g == "slight" else None for g in slight]
    if within == "strength":
        return slight
    raise ValueError(f"balance_within must be one of {BALANCE_WITHIN}, got {within!r}")


def format_table(rows: Sequence[BucketRow]) -> str:
    """The before/after "longer wins" table printed by ``chatglm-rlhf filter``."""

    def pct(x: float | None) -> str:
        return "   -  " if x is None else f"{100 * x:5.1f}%"

    lines = [f"{'length diff':>12} {'pairs':>7} {'longer wins':>11} {'pairs after':>11} {'longer wins':>11}"]
    for r in rows:
        n_after = f"{r.n_after:.0f}" if float(r.n_after).is_integer() else f"{r.n_after:.1f}"
        lines.append(
            f"{r.bucket:>12} {r.n_before:>7} {pct(r.rate_before):>11} {n_after:>11} {pct(r.rate_after):>11}"
        )
    return "\n".join(lines)


def word_length(text: str) -> int:
    return len(text.split())


def make_length_fn(tokenizer_path: str | None, trust_remote_code: bool = False) -> Callable[[str], int]:
    """Length in tokens of ``tokenizer_path``'s tokenizer, or in whitespace words when none is given."""
    if not tokenizer_path:
        return word_length
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path, trust_remote_code=trust_remote_code)
    return lambda text: len(tok.encode(text, add_special_tokens=False))
