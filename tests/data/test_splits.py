"""Seeded, sample-grouped splits of comparisons, and unique contexts as prompts."""

from __future__ import annotations

import random

import pytest

from chatglm_rlhf.data.schema import Comparison, Turn
from chatglm_rlhf.data.splits import context_key, contexts_as_prompts, sample_groups, split_comparisons
from chatglm_rlhf.errors import UserError

FRACTIONS = {"rm_train": 0.5, "rm_eval": 0.1, "judge_train": 0.3, "heldout": 0.1}


def _comp(prompt: str, sid: str = "", history: list[Turn] | None = None, tag: str = "") -> Comparison:
    return Comparison(
        sample_id=sid,
        prompt=prompt,
        response_a=f"a{tag}",
        response_b=f"b{tag}",
        label="a",
        history=history or [],
    )


def _data(n: int = 200) -> list[Comparison]:
    comps = []
    for i in range(n):
        hist = [Turn("user", f"earlier {i % 7}"), Turn("assistant", "ok")] if i % 3 == 0 else []
        comps.append(_comp(f"question {i}", sid=f"s{i}", history=hist))
        if i % 4 == 0:  # a second comparison of the same sample
            comps.append(_comp(f"question {i}", sid=f"s{i}", history=hist, tag="2"))
    return comps


def _ids(parts):
    return {name: [(c.sample_id, c.response_a) for c in part] for name, part in parts.items()}


def test_same_seed_same_split_regardless_of_input_order():
    comps = _data()
    shuffled = comps[:]
    random.Random(3).shuffle(shuffled)
    a, b = split_comparisons(comps, FRACTIONS, seed=7), split_comparisons(shuffled, FRACTIONS, seed=7)
    assert {k: sorted(v) for k, v in _ids(a).items()} == {k: sorted(v) for k, v in _ids(b).items()}
    assert _ids(split_comparisons(comps, FRACTIONS, seed=8)) != _ids(a)  # the seed matters


def test_every_comparison_once_and_no_sample_in_two_parts():
    comps = _data()
    parts = split_comparisons(comps, FRACTIONS, seed=0)
    assert list(parts) == list(FRACTIONS)
    assert sum(len(p) for p in parts.values()) == len(comps)
    owner = {}
    for name, part in parts.items():
        for c in part:
            assert owner.setdefault(context_key(c), name) == name
            assert owner.setdefault(c.sample_id, name) == name


def test_sizes_follow_fractions_within_one_group():
    comps = _data()  # 250 comparisons, groups of size 1 or 2
    parts = split_comparisons(comps, FRACTIONS, seed=1)
    for name, f in FRACTIONS.items():
        assert abs(len(parts[name]) - f * len(comps)) <= 2, (name, len(parts[name]))


def test_parts_keep_input_order():
    comps = _data(60)
    position = {id(c): i for i, c in enumerate(comps)}
    for part in split_comparisons(comps, FRACTIONS, seed=2).values():
        order = [position[id(c)] for c in part]
        assert order == sorted(order)


def test_groups_join_by_id_or_by_context_but_not_by_empty_id():
    comps = [
        _comp("p1", sid="x"),
        _comp("p2", sid="x"),  # same id, other text: one sample
        _comp("p3"),
        _comp("p3", tag="2"),  # no id, same context: one sample
        _comp("p4"),  # no id, other context: not joined with p3 through the empty id
    ]
    groups = sorted(sorted(g) for g in sample_groups(comps))
    assert groups == [[0, 1], [2, 3], [4]]


def test_zero_share_part_is_empty_and_bad_fractions_raise():
    comps = _data(40)
    parts = split_comparisons(comps, {"a": 0.0, "b": 1.0}, seed=0)
    assert parts["a"] == [] and len(parts["b"]) == len(comps)
    with pytest.raises(UserError, match="sum to 1"):
        split_comparisons(comps, {"a": 0.5, "b": 0.4}, seed=0)
    with pytest.raises(UserError, match="b must be a number"):
        split_comparisons(comps, {"a": 1.5, "b": -0.5}, seed=0)


def test_contexts_as_prompts_unique_in_first_seen_order():
    hist = [Turn("user", "hi"), Turn("assistant", "hello")]
    comps = [
        _comp("q1", sid="s1", history=hist),
        _comp("q2", sid="s2"),
        _comp("q1", sid="s1", history=hist, tag="2"),
    ]
    comps.append(_comp("q3", sid="s2"))  # a reused id on another context must not duplicate an id
    prompts = contexts_as_prompts(comps)
    assert [p.prompt for p in prompts] == ["q1", "q2", "q3"]
    assert prompts[0].history == hist and prompts[0].responses == []
    assert prompts[0].meta["comparisons"] == 2 and prompts[1].meta["comparisons"] == 1
    assert len({p.id for p in prompts}) == 3 and prompts[0].id == "s1"
