"""Pure helpers of post-filtering: pair keys, majority votes, annotator agreement, preference cycles.

A *pair* is an unordered pair of responses to one context (history + prompt). Labels are put in a
canonical orientation (``lo`` = the lexicographically smaller response text) so that "a" on
``(x, y)`` and "b" on ``(y, x)`` count as the same vote.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence

from chatglm_rlhf.data.schema import Comparison

# One definition, re-exported here: the leak-free splits and the vote grouping key a context alike.
from chatglm_rlhf.data.splits import context_key as context_key

LO, HI, TIE = "lo", "hi", "tie"  # canonical labels: the smaller text wins / the larger wins / tie


def pair_key(c: Comparison) -> tuple[str, str, str]:
    lo, hi = sorted((c.response_a, c.response_b))
    return context_key(c), lo, hi


def canonical_label(c: Comparison) -> str:
    """``lo``/``hi``/``tie``: which of the (sorted) responses this label prefers."""
    if c.label == "tie":
        return TIE
    winner = c.response_a if c.label == "a" else c.response_b
    lo = min(c.response_a, c.response_b)
    return LO if winner == lo else HI


def oriented_label(canonical: str, c: Comparison) -> str:
    """The canonical label expressed as "a"/"b"/"tie" in ``c``'s own orientation."""
    if canonical == TIE:
        return "tie"
    winner_is_lo = canonical == LO
    a_is_lo = c.response_a <= c.response_b
    return "a" if winner_is_lo == a_is_lo else "b"


def majority(labels: Iterable[str]) -> tuple[str | None, float]:
    """Strict plurality label and its share of the votes; ``(None, share)`` when the top is shared."""
    counts = Counter(labels)
    total = sum(counts.values())
    if not total:
        return None, 0.0
    (top, n), *rest = counts.most_common()
    if rest and rest[0][1] == n:
        return None, n / total
    return top, n / total


def annotator_agreement(
    votes: Sequence[tuple[Hashable, str | None, str]],
) -> dict[str, tuple[int, int]]:
    """Per annotator, ``(agreements, scored)`` with the leave-one-out majority of the *other* annotators.

    ``votes`` are ``(pair_key, annotator, canonical_label)``. A vote is scored only when the other
    annotators of that pair have a strict majority; leaving the annotator out keeps a spammer from
    voting for itself (with three annotators it would otherwise be right a third of the time for free).
    Votes with ``annotator=None`` are used as "others" but never scored.
    """
    by_pair: dict[Hashable, list[tuple[str | None, str]]] = defaultdict(list)
    for key, annotator, label in votes:
        by_pair[key].append((annotator, label))
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for group in by_pair.values():
        for annotator in {a for a, _ in group if a is not None}:
            others = [lab for a, lab in group if a != annotator]
            top, _ = majority(others)
            if top is None:
                continue
            for a, lab in group:
                if a == annotator:
                    stats[annotator][1] += 1
                    stats[annotator][0] += int(lab == top)
    return {a: (s[0], s[1]) for a, s in stats.items()}


def find_spammers(
    agreement: dict[str, tuple[int, int]], threshold: float, min_items: int
) -> dict[str, float]:
    """Annotators whose agreement rate is below ``threshold`` over at least ``min_items`` scored votes."""
    out = {}
    for annotator, (agree, scored) in agreement.items():
        if scored >= min_items and agree / scored < threshold:
            out[annotator] = agree / scored
    return out


def strongly_connected_components(nodes: Iterable[Hashable], edges: Sequence[tuple[Hashable, Hashable]]):
    """Tarjan's algorithm, iterative (no recursion limit): a list of components (sets of nodes)."""
    graph: dict[Hashable, list[Hashable]] = {n: [] for n in nodes}
    for u, v in edges:
        graph.setdefault(u, []).append(v)
        graph.setdefault(v, [])
    index: dict[Hashable, int] = {}
    low: dict[Hashable, int] = {}
    on_stack: set[Hashable] = set()
    stack: list[Hashable] = []
    components: list[set[Hashable]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            for j in range(i, len(graph[node])):
                nxt = graph[node][j]
                if nxt not in index:
                    work.append((node, j + 1))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == node:
                        break
                components.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def cycle_edges(edges: Sequence[tuple[Hashable, Hashable]]) -> set[int]:
    """Indices of the edges (winner → loser) that lie on a directed cycle.

    An edge u → v lies on a cycle exactly when v reaches u, i.e. when u and v are in the same strongly
    connected component; a self-loop is a cycle too. Every such comparison is inconsistent with some
    others, and there is no principled way to pick which one of a cycle is wrong, so all are flagged.
    """
    comp_of: dict[Hashable, int] = {}
    nodes = {n for e in edges for n in e}
    for i, comp in enumerate(strongly_connected_components(nodes, edges)):
        for n in comp:
            comp_of[n] = i
    return {i for i, (u, v) in enumerate(edges) if u == v or comp_of[u] == comp_of[v]}
