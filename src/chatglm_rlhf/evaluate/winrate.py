"""Win / tie / loss counting and its bootstrap confidence interval (pure functions, no models).

A *verdict* is what a judge says about one pair, from the point of view of answer ``a`` (the policy):
``"a"`` (policy better), ``"b"`` (baseline better) or ``"tie"``. An *outcome* is the same thing named
from the policy's side: ``"win"``, ``"loss"``, ``"tie"``.

The headline number is the **win rate with ties counted half**, ``(wins + ties / 2) / n``: 0.5 means
"no better than the baseline", which is what a reader expects a win rate of an unchanged model to be.
The paper reports win/tie/loss separately; both are kept.

The confidence interval is a percentile bootstrap over prompts (resample the outcomes with replacement,
recompute the win rate), with a seeded generator so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

VERDICT_TO_OUTCOME = {"a": "win", "b": "loss", "tie": "tie"}
OUTCOMES = ("win", "tie", "loss")
NO_CATEGORY = "(none)"  # the per-category key of prompts without a category


@dataclass(frozen=True)
class WTL:
    """Counts of wins, ties and losses."""

    win: int = 0
    tie: int = 0
    loss: int = 0

    @property
    def n(self) -> int:
        return self.win + self.tie + self.loss

    def rate(self, what: str) -> float:
        return getattr(self, what) / self.n if self.n else float("nan")

    @property
    def win_rate(self) -> float:
        """Wins + half the ties, over all pairs (0.5 = on par with the baseline)."""
        return (self.win + 0.5 * self.tie) / self.n if self.n else float("nan")


def to_outcome(verdict: str) -> str:
    """``"a"|"b"|"tie"`` (policy is ``a``) -> ``"win"|"loss"|"tie"``; outcomes pass through."""
    if verdict in OUTCOMES:
        return verdict
    try:
        return VERDICT_TO_OUTCOME[verdict]
    except KeyError:
        raise ValueError(
            f"a verdict must be one of 'a', 'b', 'tie' (or win/tie/loss), got {verdict!r}"
        ) from None


def count(outcomes: Iterable[str]) -> WTL:
    """Count verdicts or outcomes."""
    c = {"win": 0, "tie": 0, "loss": 0}
    for o in outcomes:
        c[to_outcome(o)] += 1
    return WTL(**c)


def _scores(outcomes: Sequence[str]) -> np.ndarray:
    """1 per win, 0.5 per tie, 0 per loss: the win rate is their mean."""
    value = {"win": 1.0, "tie": 0.5, "loss": 0.0}
    return np.array([value[to_outcome(o)] for o in outcomes], dtype=np.float64)


def bootstrap_ci(
    outcomes: Sequence[str], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the win rate (ties half); ``(nan, nan)`` for no outcomes.

    The same ``seed`` and outcomes always give the same interval.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    scores = _scores(outcomes)
    if scores.size == 0 or n_resamples < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, scores.size, size=(n_resamples, scores.size))
    means = scores[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(lo), float(hi)


def summary(
    outcomes: Sequence[str], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict:
    """``{win, tie, loss, n, win_rate, tie_rate, loss_rate, ci: [lo, hi]}`` for one group of pairs.

    ``win_rate`` counts ties half; ``win_share`` is the plain share of wins (the paper's "win").
    """
    c = count(outcomes)
    lo, hi = bootstrap_ci(outcomes, n_resamples, confidence, seed)
    return {
        "win": c.win,
        "tie": c.tie,
        "loss": c.loss,
        "n": c.n,
        "win_share": c.rate("win"),
        "tie_rate": c.rate("tie"),
        "loss_rate": c.rate("loss"),
        "win_rate": c.win_rate,
        "ci": [lo, hi],
        "confidence": confidence,
    }


def table(
    outcomes: Sequence[str],
    categories: Sequence[str | None],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """``{"overall": summary, "per_category": {category: summary}}``, categories sorted by name.

    Prompts without a category are grouped under :data:`NO_CATEGORY`. Each category's bootstrap uses its
    own seed offset so the intervals are independent yet reproducible.
    """
    if len(outcomes) != len(categories):
        raise ValueError(f"{len(outcomes)} outcomes but {len(categories)} categories")
    groups: dict[str, list[str]] = {}
    for o, cat in zip(outcomes, categories):
        groups.setdefault(cat if cat else NO_CATEGORY, []).append(o)
    per = {
        cat: summary(groups[cat], n_resamples, confidence, seed + 1 + i)
        for i, cat in enumerate(sorted(groups))
    }
    return {"overall": summary(outcomes, n_resamples, confidence, seed), "per_category": per}


def format_table(result: dict, title: str = "") -> str:
    """A plain-text table of :func:`table`'s output for the console."""
    head = f"{'category':<20} {'n':>5} {'win':>6} {'tie':>6} {'loss':>6} {'win rate':>9}  CI"
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    rows = [("overall", result["overall"])] + sorted(result.get("per_category", {}).items())
    for name, s in rows:
        lo, hi = s["ci"]
        lines.append(
            f"{name[:20]:<20} {s['n']:>5} {s['win_share']:>6.1%} {s['tie_rate']:>6.1%} "
            f"{s['loss_rate']:>6.1%} {s['win_rate']:>9.3f}  [{lo:.3f}, {hi:.3f}]"
        )
    return "\n".join(lines)
