"""Agreement between scores and labels: small pure functions for evaluation.

``preference_accuracy`` (does a scorer rank labelled pairs like the label, with a Wilson interval),
``sign_agreement`` (do two scorers order pairs alike). Refusal heuristics are in :mod:`evaluate.refusal`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def wilson_interval(hits: float, n: int, z: float = 1.96) -> list[float]:
    """The Wilson score interval of a share ``hits / n`` (95% at z = 1.96): unlike p +- z*se it stays
    inside [0, 1] and is honest for the small pair counts a judge is checked on."""
    p, z2 = hits / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def preference_accuracy(r_a: Sequence[float], r_b: Sequence[float], labels: Sequence[str]) -> dict[str, Any]:
    """Share of decided pairs (label a or b) where the higher score is the labelled winner; score ties
    count half (a constant scorer gets 0.5, not 0 or 1); ``ci95``: its Wilson interval."""
    hits, n = 0.0, 0
    for a, b, lab in zip(r_a, r_b, labels, strict=True):
        if lab == "tie":
            continue
        n += 1
        hits += 0.5 if a == b else float((a > b) == (lab == "a"))
    if not n:
        return {"n": 0, "accuracy": None}
    return {"n": n, "accuracy": hits / n, "ci95": wilson_interval(hits, n)}


def sign_agreement(d1: Sequence[float], d2: Sequence[float]) -> float | None:
    """Share of pairs whose two score differences have the same sign (a zero agrees only with a zero)."""
    pairs = list(zip(d1, d2, strict=True))
    if not pairs:
        return None
    same = sum((x > 0) == (y > 0) and (x < 0) == (y < 0) for x, y in pairs)
    return same / len(pairs)


def majority_verdict(verdicts: Sequence[str]) -> str:
    """An ensemble's verdict on one pair from its judges' ("a" / "b" / "tie"): the side more judges
    prefer; equal counts are a tie (two judges must both prefer a side for it to win)."""
    a, b = sum(v == "a" for v in verdicts), sum(v == "b" for v in verdicts)
    return "a" if a > b else "b" if b > a else "tie"


def verdict_agreement(v1: Sequence[str], v2: Sequence[str]) -> float | None:
    """Share of pairs on which two judges give the same verdict (a tie agrees only with a tie)."""
    pairs = list(zip(v1, v2, strict=True))
    return sum(x == y for x, y in pairs) / len(pairs) if pairs else None


def ensemble(verdicts: dict[str, Sequence[str]]) -> dict[str, Any]:
    """The majority verdict per pair of several judges (name -> verdicts on the same pairs), how often
    each two of them agree, and the share of pairs on which all agree."""
    names = list(verdicts)
    rows = list(zip(*(verdicts[n] for n in names), strict=True))
    pairwise = {f"{x}|{y}": verdict_agreement(verdicts[x], verdicts[y])
                for i, x in enumerate(names) for y in names[i + 1:]}  # fmt: skip
    return {
        "verdicts": [majority_verdict(r) for r in rows],
        "pairwise_agreement": pairwise,
        "all_agree": sum(len(set(r)) == 1 for r in rows) / len(rows) if rows else None,
    }
