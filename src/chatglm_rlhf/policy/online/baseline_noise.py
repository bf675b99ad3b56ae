"""Is one reference answer enough for the reference baseline r(x, y) - r(x, y_ref)?

Subtracting a reference answer's score removes the prompt's own level (the *between-prompt* variance B)
but adds that answer's noise (the *within-prompt* variance W of one answer's score). For the mean of
``n`` reference answers drawn like the policy's, var(r - r_ref) = W + W / n against var(r) = B + W: the
baseline lowers the spread only when W / n < B, so it needs ``n > W / B`` answers, and one answer (the
paper's greedy reference) is enough only when B > W, i.e. when prompts differ more than answers do.

B and W come from the prompt filter's k sampled answers per prompt (``prompt_filter.jsonl``), the
unbiased one-way ANOVA split (the prompt means' variance less their own sampling noise W / k).
``scripts/baseline_variance.py`` prints the same for finished runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def variance_split(groups: Sequence[Sequence[float]]) -> dict[str, float] | None:
    """Between- and within-prompt variance of scores grouped by prompt (groups of >= 2; None without
    any): ``share`` is B / (B + W) (plain), ``share_unbiased`` the ANOVA one a baseline can remove."""
    groups = [list(g) for g in groups if len(g) > 1]
    if not groups:
        return None
    k = statistics.fmean(len(g) for g in groups)
    between = statistics.pvariance([statistics.fmean(g) for g in groups]) if len(groups) > 1 else 0.0
    within = statistics.fmean(statistics.pvariance(g) for g in groups)
    w_true = statistics.fmean(statistics.variance(g) for g in groups)
    b_true = max(0.0, between - w_true / k)
    return {
        "prompts": len(groups), "k": k, "between": b_true, "within": w_true,
        "share": between / (between + within) if between + within else 0.0,
        "share_unbiased": b_true / (b_true + w_true) if b_true + w_true else 0.0,
    }  # fmt: skip


def answers_needed(between: float, within: float) -> int | None:
    """The fewest reference answers whose mean lowers the spread (W / n < B); None when B is 0 (no
    number of answers helps: prompts do not differ)."""
    if within <= 0:
        return 1
    if between <= 0:
        return None
    return math.floor(within / between) + 1


def baseline_advice(split: dict[str, float], reference_answers: int) -> str | None:
    """A warning when ``reference_answers`` (1 for the greedy reference) are too few for this data."""
    need = answers_needed(split["between"], split["within"])
    share = split["share_unbiased"]
    if need is None:
        return (f"the reference baseline cannot lower the reward's spread here: prompts differ by nothing "
                f"the reward sees (between-prompt share {share:.2f}); consider reward_baseline=false")  # fmt: skip
    if reference_answers >= need:
        return None
    return (
        f"{reference_answers} reference answer(s) per prompt add more noise than the baseline removes "
        f"(between-prompt share of the reward's variance {share:.2f}; one answer needs > 0.5): use the mean "
        f"of at least {need} sampled answers (baseline_k={need} baseline_greedy=false)"
    )
