"""The reward model's eval report (pure functions on numbers, plus one helper that scores comparisons).

* accuracy: share of non-tie pairs where the chosen response gets the higher reward (exact reward ties
  count half), overall, per length-difference bucket, and split by whether the longer or the shorter
  response was the preferred one: an RM that learned "longer is better" is good on the first and bad on
  the second;
* Pearson and Spearman correlation of reward with response length (all scored responses);
* reward mean and standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from chatglm_rlhf.reward.balancing import bucket_labels, bucket_of


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r; None with fewer than 2 points or a constant input."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks with ties given their average rank (as Spearman's rho needs)."""
    a = np.asarray(x, dtype=float)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    r = np.empty(len(a), dtype=float)
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        r[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's r of the (tie-averaged) ranks."""
    if len(x) < 2:
        return None
    return pearson(ranks(x), ranks(y))


def _acc(d: np.ndarray) -> float | None:
    if not len(d):
        return None
    return float(((d > 0) + 0.5 * (d == 0)).mean())


def pair_report(
    r_chosen: Sequence[float],
    r_rejected: Sequence[float],
    len_chosen: Sequence[int],
    len_rejected: Sequence[int],
    edges: Sequence[int] = (3, 10, 30, 100),
) -> dict[str, Any]:
    """Accuracy overall / per bucket / longer-vs-shorter preferred, length correlations, reward stats."""
    rc, rr = np.asarray(r_chosen, dtype=float), np.asarray(r_rejected, dtype=float)
    lc, lr = np.asarray(len_chosen, dtype=int), np.asarray(len_rejected, dtype=int)
    d = rc - rr
    buckets = np.asarray([bucket_of(abs(int(a) - int(b)), edges) for a, b in zip(lc, lr)])
    per_bucket = {}
    for b in bucket_labels(edges):
        sel = buckets == b
        if sel.any():
            per_bucket[b] = {"n": int(sel.sum()), "accuracy": _acc(d[sel])}
    longer, shorter = lc > lr, lc < lr
    all_r = np.concatenate([rc, rr])
    all_len = np.concatenate([lc, lr])
    return {
        "n": int(len(d)),
        "accuracy": _acc(d),
        "accuracy_by_bucket": per_bucket,
        "longer_preferred": {"n": int(longer.sum()), "accuracy": _acc(d[longer])},
        "shorter_preferred": {"n": int(shorter.sum()), "accuracy": _acc(d[shorter])},
        "length_pearson": pearson(all_r, all_len),
        "length_spearman": spearman(all_r, all_len),
        "reward_mean": float(all_r.mean()) if len(all_r) else None,
        "reward_std": float(all_r.std()) if len(all_r) else None,
        "margin_mean": float(d.mean()) if len(d) else None,
    }


def evaluate_comparisons(scorer, comparisons, edges: Sequence[int] = (3, 10, 30, 100)) -> dict[str, Any]:
    """Score ``comparisons`` with ``scorer`` (a :class:`RewardScorer`) and build the report.

    Ties are not scored for accuracy (they have no chosen side); their count is reported. Lengths are
    in the RM tokenizer's tokens.
    """
    from chatglm_rlhf.reward.encoding import response_length

    decided = [c for c in comparisons if c.label != "tie"]
    r_a, r_b = scorer.score_comparisons(decided)
    rc, rr, lc, lr = [], [], [], []
    tok = scorer.tokenizer
    for c, a, b in zip(decided, r_a, r_b):
        first = c.label == "a"
        rc.append(a if first else b)
        rr.append(b if first else a)
        lc.append(response_length(tok, c.chosen))
        lr.append(response_length(tok, c.rejected))
    report = pair_report(rc, rr, lc, lr, edges)
    report["ties_skipped"] = len(comparisons) - len(decided)
    return report


def format_report(report: dict[str, Any]) -> str:
    """A few readable lines for the CLI."""

    def pct(x: float | None) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:+.3f}"

    lines = [f"accuracy {pct(report['accuracy'])} on {report['n']} pairs"]
    for b, row in report["accuracy_by_bucket"].items():
        lines.append(f"  length diff {b:>10}: {pct(row['accuracy']):>6} of {row['n']}")
    lp, sp = report["longer_preferred"], report["shorter_preferred"]
    lines.append(f"  longer preferred: {pct(lp['accuracy'])} of {lp['n']}")
    lines.append(f"  shorter preferred: {pct(sp['accuracy'])} of {sp['n']}")
    lines.append(
        f"reward vs length: pearson {num(report['length_pearson'])}, spearman {num(report['length_spearman'])}"
    )
    if report["reward_mean"] is not None:
        lines.append(f"reward mean {report['reward_mean']:+.3f}, std {report['reward_std']:.3f}")
    return "\n".join(lines)
