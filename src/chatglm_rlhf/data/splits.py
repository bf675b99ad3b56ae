"""Deterministic, leak-free splits of comparison data, and the unique dialogue contexts as prompts.

One preference file feeds several consumers that must not see each other's samples: the RM's training
and evaluation sets, an independent judge RM (trained only on its own part, never used in training:
Gao et al. 2022) and held-out prompts for evaluating the policy. :func:`split_comparisons` therefore
splits by *sample*, not by comparison: all comparisons that share a ``sample_id`` or the same dialogue
context (history + prompt) form one group, and a group lands in exactly one part.

The order of groups is a hash of the seed and the group's key, so the split does not depend on the
order of the input file, and the same seed always gives the same parts. Part sizes follow the fractions
in comparisons (not groups), within one group of the exact target.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

from chatglm_rlhf.data.formats import stable_sample_id
from chatglm_rlhf.data.schema import Comparison, DialogueSample
from chatglm_rlhf.errors import UserError


def context_key(c: Comparison | DialogueSample) -> str:
    """The dialogue context (history + prompt) as a short stable id: equal contexts, equal keys,
    whatever the sample ids say (HH rows have none). Post-filtering groups votes by it too."""
    return stable_sample_id(list(c.history), c.prompt)


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving keeps the trees flat
        i = parent[i]
    return i


def sample_groups(comparisons: Sequence[Comparison]) -> list[list[int]]:
    """Indices of comparisons grouped so that a shared ``sample_id`` or a shared context joins a group.

    An empty ``sample_id`` means "no id" (not one id shared by every such record); those comparisons
    are grouped by their context only.
    """
    parent = list(range(len(comparisons)))
    first_seen: dict[str, int] = {}
    for i, c in enumerate(comparisons):
        keys = ["ctx:" + context_key(c)] + (["id:" + c.sample_id] if c.sample_id else [])
        for key in keys:
            j = first_seen.setdefault(key, i)
            parent[_find(parent, i)] = _find(parent, j)
    groups: dict[int, list[int]] = {}
    for i in range(len(comparisons)):
        groups.setdefault(_find(parent, i), []).append(i)
    return list(groups.values())


def _check_fractions(fractions: Mapping[str, float]) -> None:
    if not fractions:
        raise UserError("split fractions: give at least one part, e.g. {'train': 0.9, 'eval': 0.1}")
    for name, f in fractions.items():
        if not isinstance(f, (int, float)) or isinstance(f, bool) or not math.isfinite(f) or f < 0:
            raise UserError(f"split fractions: {name} must be a number >= 0, got {f!r}")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        # Summing to less than 1 would silently drop the rest of the data.
        raise UserError(f"split fractions must sum to 1, got {total:g} ({dict(fractions)})")


def _group_order(comparisons: Sequence[Comparison], groups: list[list[int]], seed: int) -> list[list[int]]:
    def key(group: list[int]) -> str:
        # The group's smallest context key names it independently of where it sits in the file.
        name = min(context_key(comparisons[i]) for i in group)
        return hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()

    return sorted(groups, key=key)


def split_comparisons(
    comparisons: Sequence[Comparison], fractions: Mapping[str, float], seed: int = 0
) -> dict[str, list[Comparison]]:
    """Split by sample into named parts of (about) the given fractions; every comparison lands once.

    ``fractions`` maps part names to shares summing to 1, e.g. ``{"rm_train": .6, "rm_eval": .1,
    "judge_train": .2, "heldout": .1}``; the result has the same names in the same order. Within a part
    comparisons keep their input order. A part can come out empty only if its share is below one group.
    """
    _check_fractions(fractions)
    names = list(fractions)
    total = len(comparisons)
    cumulative, running = [], 0.0
    for name in names:
        running += fractions[name]
        cumulative.append(round(running * total))
    cumulative[-1] = total  # rounding must never leave comparisons unassigned
    chosen: dict[str, list[int]] = {name: [] for name in names}
    part, assigned = 0, 0
    for group in _group_order(comparisons, sample_groups(comparisons), seed):
        # Move on once this part has reached its cumulative target (zero-share parts are skipped).
        while part < len(names) - 1 and assigned >= cumulative[part]:
            part += 1
        chosen[names[part]].extend(group)
        assigned += len(group)
    return {name: [comparisons[i] for i in sorted(idx)] for name, idx in chosen.items()}


def contexts_as_prompts(comparisons: Sequence[Comparison]) -> list[DialogueSample]:
    """The unique dialogue contexts (history + last user turn) as prompt-only samples, in first-seen order.

    The id is the first comparison's ``sample_id`` (the context key when it has none, or when another
    context already took that id); ``meta``
    records how many comparisons shared the context.
    """
    out: dict[str, DialogueSample] = {}
    ids: set[str] = set()
    for c in comparisons:
        key = context_key(c)
        if key in out:
            out[key].meta["comparisons"] += 1
            continue
        # Ids must stay unique per prompt: a reused sample_id on another context falls back to its key.
        sid = c.sample_id if c.sample_id and c.sample_id not in ids else key
        ids.add(sid)
        out[key] = DialogueSample(
            id=sid,
            prompt=c.prompt,
            history=list(c.history),
            category=c.category,
            meta={"comparisons": 1},
        )
    return list(out.values())
