"""Inter-annotator agreement: Krippendorff's alpha, Cohen's kappa, agreement with the majority, cycles.

Pure functions over plain Python data so they can be checked against published examples.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from itertools import combinations

Metric = Callable[[object, object, dict], float]


def _nominal(c: object, k: object, _n: dict) -> float:
    return 0.0 if c == k else 1.0


def _interval(c: float, k: float, _n: dict) -> float:
    return float(c - k) ** 2


def _ordinal(c: float, k: float, n: dict) -> float:
    """Krippendorff's ordinal metric: ranks between c and k, weighted by how often values occur."""
    lo, hi = (c, k) if c <= k else (k, c)
    between = sum(n_g for g, n_g in n.items() if lo <= g <= hi)
    return (between - (n[lo] + n[hi]) / 2.0) ** 2


METRICS: dict[str, Metric] = {"nominal": _nominal, "interval": _interval, "ordinal": _ordinal}


def krippendorff_alpha(units: Iterable[Sequence[Hashable]], level: str = "nominal") -> float | None:
    """Alpha over ``units`` (each: the values the coders gave one unit; missing values left out).

    Units with fewer than two values are not pairable and do not count. Returns None when alpha is
    undefined (no pairable unit, or every value identical so no disagreement is expected).
    """
    metric = METRICS[level]
    coincidence: dict[tuple, float] = defaultdict(float)
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for i, j in ((i, j) for i in range(m) for j in range(m) if i != j):
            coincidence[(values[i], values[j])] += 1.0 / (m - 1)
    if not coincidence:
        return None
    n_c: dict = defaultdict(float)
    for (c, _k), o in coincidence.items():
        n_c[c] += o
    n = sum(n_c.values())
    observed = sum(o * metric(c, k, n_c) for (c, k), o in coincidence.items()) / n
    expected = sum(n_c[c] * n_c[k] * metric(c, k, n_c) for c in n_c for k in n_c) / (n * (n - 1))
    if expected == 0:
        return None
    return 1.0 - observed / expected


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters over the items both labelled; None if undefined (p_e = 1)."""
    if not pairs:
        return None
    n = len(pairs)
    p_o = sum(1 for x, y in pairs if x == y) / n
    first, second = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    p_e = sum(first[c] * second[c] for c in set(first) | set(second)) / (n * n)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


def mean_pairwise_kappa(
    labels: dict[Hashable, dict[Hashable, Hashable]], min_shared: int = 5
) -> tuple[float | None, int]:
    """Mean Cohen's kappa over annotator pairs sharing at least ``min_shared`` items (Light's kappa).

    ``labels`` maps item -> {annotator: label}. Returns (mean kappa, number of pairs averaged).
    """
    by_pair: dict[tuple, list[tuple]] = defaultdict(list)
    for votes in labels.values():
        for u, v in combinations(sorted(votes, key=str), 2):
            by_pair[(u, v)].append((votes[u], votes[v]))
    kappas = [
        k for pairs in by_pair.values() if len(pairs) >= min_shared if (k := cohen_kappa(pairs)) is not None
    ]
    return (sum(kappas) / len(kappas) if kappas else None), len(kappas)


def majority_agreement(labels: dict[Hashable, dict[Hashable, Hashable]]) -> dict[Hashable, tuple[int, int]]:
    """For each annotator: (agreements, comparisons) with the majority of the *other* annotators.

    Leave-one-out, so an annotator never votes on the majority they are compared with; items where
    the others are split evenly are left out. A random clicker lands near 1/3 for a 3-way label.
    """
    out: dict[Hashable, list[int]] = defaultdict(lambda: [0, 0])
    for votes in labels.values():
        for user, label in votes.items():
            out[user]  # everyone who labelled appears, with (0, 0) when never comparable
            others = Counter(v for u, v in votes.items() if u != user)
            if not others:
                continue
            ranked = others.most_common(2)
            if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
                continue
            out[user][1] += 1
            out[user][0] += int(label == ranked[0][0])
    return {u: (a, n) for u, (a, n) in out.items()}


def count_cycles(prefs: dict[tuple[int, int], str]) -> tuple[int, int]:
    """Intransitive triangles among one annotator's judgements of one sample's responses.

    ``prefs`` maps (i, j), i < j, to "a" (i preferred), "b" (j preferred) or "tie". Returns (triangles
    with all three pairs judged and no tie, of which cyclic), e.g. 0 > 1, 1 > 2, 2 > 0 is a cycle.
    """
    indices = sorted({i for pair in prefs for i in pair})
    checked = cycles = 0
    for x, y, z in combinations(indices, 3):
        pairs = [(x, y), (y, z), (x, z)]
        if any(prefs.get(p, "tie") == "tie" for p in pairs):
            continue
        checked += 1
        wins = Counter(p[0] if prefs[p] == "a" else p[1] for p in pairs)
        cycles += int(max(wins.values()) == 1)  # in a cycle everyone wins exactly once
    return checked, cycles
