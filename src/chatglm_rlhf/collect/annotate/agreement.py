"""Inter-annotator agreement: Krippendorff's alpha, Cohen's kappa, agreement with the majority, cycles.

Pure functions over plain Python data so they can be checked against published examples. Each measure
is also an accumulator fed one item at a time (:class:`Coincidences`, :class:`PairwiseKappa`,
:class:`MajorityAgreement`), whose memory does not grow with the number of items: the stats of a
project stream its annotations through them.
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


class Coincidences:
    """Krippendorff's coincidence matrix, built one unit at a time: its size is the number of distinct
    values squared, whatever the number of units (so a project of any size fits)."""

    def __init__(self) -> None:
        self.o: dict[tuple, float] = defaultdict(float)

    def add(self, values: Sequence[Hashable]) -> None:
        """One unit: the values its coders gave (missing ones left out); fewer than two do not count."""
        m = len(values)
        if m < 2:
            return
        for i, j in ((i, j) for i in range(m) for j in range(m) if i != j):
            self.o[(values[i], values[j])] += 1.0 / (m - 1)

    def alpha(self, level: str = "nominal") -> float | None:
        metric = METRICS[level]
        if not self.o:
            return None
        n_c: dict = defaultdict(float)
        for (c, _k), o in self.o.items():
            n_c[c] += o
        n = sum(n_c.values())
        observed = sum(o * metric(c, k, n_c) for (c, k), o in self.o.items()) / n
        expected = sum(n_c[c] * n_c[k] * metric(c, k, n_c) for c in n_c for k in n_c) / (n * (n - 1))
        if expected == 0:
            return None
        return 1.0 - observed / expected


def krippendorff_alpha(units: Iterable[Sequence[Hashable]], level: str = "nominal") -> float | None:
    """Alpha over ``units`` (each: the values the coders gave one unit; missing values left out).

    Units with fewer than two values are not pairable and do not count. Returns None when alpha is
    undefined (no pairable unit, or every value identical so no disagreement is expected).
    """
    table = Coincidences()
    for values in units:
        table.add(values)
    return table.alpha(level)


def _kappa(table: Counter) -> float | None:
    """Cohen's kappa from a contingency table {(label of rater 1, label of rater 2): count}."""
    n = sum(table.values())
    if not n:
        return None
    p_o = sum(c for (x, y), c in table.items() if x == y) / n
    first, second = Counter(), Counter()
    for (x, y), c in table.items():
        first[x] += c
        second[y] += c
    p_e = sum(first[c] * second[c] for c in set(first) | set(second)) / (n * n)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters over the items both labelled; None if undefined (p_e = 1)."""
    return _kappa(Counter(pairs))


class PairwiseKappa:
    """Contingency tables per annotator pair, one item at a time (size: pairs x labels squared)."""

    def __init__(self) -> None:
        self.tables: dict[tuple, Counter] = defaultdict(Counter)

    def add(self, votes: dict[Hashable, Hashable]) -> None:
        """One item's {annotator: label}."""
        for u, v in combinations(sorted(votes, key=str), 2):
            self.tables[(u, v)][(votes[u], votes[v])] += 1

    def mean(self, min_shared: int = 5) -> tuple[float | None, int]:
        kappas = [
            k for t in self.tables.values() if sum(t.values()) >= min_shared if (k := _kappa(t)) is not None
        ]
        return (sum(kappas) / len(kappas) if kappas else None), len(kappas)


def mean_pairwise_kappa(
    labels: dict[Hashable, dict[Hashable, Hashable]], min_shared: int = 5
) -> tuple[float | None, int]:
    """Mean Cohen's kappa over annotator pairs sharing at least ``min_shared`` items (Light's kappa).

    ``labels`` maps item -> {annotator: label}. Returns (mean kappa, number of pairs averaged).
    """
    tables = PairwiseKappa()
    for votes in labels.values():
        tables.add(votes)
    return tables.mean(min_shared)


class MajorityAgreement:
    """Per annotator: (agreements, comparisons) with the majority of the *other* annotators.

    Leave-one-out, so an annotator never votes on the majority they are compared with; items where
    the others are split evenly are left out. A random clicker lands near 1/3 for a 3-way label.
    Fed one item at a time; holds two counts per annotator.
    """

    def __init__(self) -> None:
        self.counts: dict[Hashable, list[int]] = defaultdict(lambda: [0, 0])

    def add(self, votes: dict[Hashable, Hashable]) -> None:
        for user, label in votes.items():
            self.counts[user]  # everyone who labelled appears, with (0, 0) when never comparable
            others = Counter(v for u, v in votes.items() if u != user)
            if not others:
                continue
            ranked = others.most_common(2)
            if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
                continue
            self.counts[user][1] += 1
            self.counts[user][0] += int(label == ranked[0][0])

    def result(self) -> dict[Hashable, tuple[int, int]]:
        return {u: (a, n) for u, (a, n) in self.counts.items()}


def majority_agreement(labels: dict[Hashable, dict[Hashable, Hashable]]) -> dict[Hashable, tuple[int, int]]:
    """:class:`MajorityAgreement` over ``labels`` (item -> {annotator: label})."""
    tally = MajorityAgreement()
    for votes in labels.values():
        tally.add(votes)
    return tally.result()


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
