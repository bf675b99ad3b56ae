"""The demo world v2: split disjointness by construction, families, knowledge kept out of RL."""

from __future__ import annotations

import pytest

from chatglm_rlhf.tasks.demo.demonstrations import tokenizer_corpus
from chatglm_rlhf.tasks.demo.world import (
    CATEGORIES,
    KNOWLEDGE,
    RL_CATEGORIES,
    DemoWorld,
    all_specs,
    lexicon,
    split_of,
    words_of,
)

WORLD = DemoWorld(seed=0)


def test_pools_are_disjoint_by_key_and_text():
    pools = {"train": set(), "dev": set(), "eval": set()}
    for spec in all_specs():
        pools[split_of(spec.key)].add(spec.prompt)
    assert all(pools.values())
    assert (
        not pools["train"] & pools["eval"]
        and not pools["train"] & pools["dev"]
        and not pools["dev"] & pools["eval"]
    )


def test_sampled_splits_never_share_prompts_or_histories_with_held_out_ones():
    held = {s.prompt for split in ("eval", "dev") for s in WORLD.prompts(split, 400)}
    for split in ("sft", "pref", "rl"):
        for s in WORLD.prompts(split, 500):
            assert s.prompt not in held
            assert not {t.content for t in s.history} & held


def test_knowledge_is_asked_by_sft_and_the_probe_only():
    assert {s.category for s in WORLD.prompts("probe", 200)} == set(KNOWLEDGE)
    assert {s.category for s in WORLD.prompts("sft", 600)} == set(CATEGORIES)
    for split in ("pref", "rl", "dev", "eval"):
        assert {s.category for s in WORLD.prompts(split, 400)} == set(RL_CATEGORIES)
    with pytest.raises(ValueError, match="does not ask"):
        WORLD.pool("rl", "facts")


def test_arithmetic_split_is_by_operands_not_phrasing():
    by_key: dict[str, set[str]] = {}
    for spec in all_specs():
        if spec.category == "arithmetic":
            by_key.setdefault(spec.key, set()).add(split_of(spec.key))
    assert all(len(v) == 1 for v in by_key.values()) and len(by_key) > 100


def test_same_seed_reproduces_other_seed_differs_and_prefix_stable():
    a, b, c = DemoWorld(1).prompts("rl", 50), DemoWorld(1).prompts("rl", 50), DemoWorld(2).prompts("rl", 50)
    assert [s.prompt for s in a] == [s.prompt for s in b] != [s.prompt for s in c]
    assert [s.id for s in a[:20]] == [s.id for s in DemoWorld(1).prompts("rl", 20)]
    assert len({s.id for s in a}) == 50


def test_the_prompt_carries_what_correctness_needs():
    for s in WORLD.prompts("eval", 300):
        g = s.meta["gold"]
        if s.category == "end_mark":
            assert "exclamation mark" in s.prompt and g["reference"].endswith("!")
        if s.category == "one_word":
            assert g["excluded"] in s.prompt and g["excluded"] not in g["items"]
        if s.category == "count":
            assert f" {g['item_category']}" in s.prompt


def test_every_reference_uses_the_lexicon_and_the_corpus_has_no_held_out_prompt():
    lex = lexicon()
    for spec in all_specs():
        assert {w for w in words_of(spec.gold["reference"]) if not w.isdigit()} <= lex, spec.gold["reference"]
    corpus = tokenizer_corpus(WORLD, 900)
    held = {s.prompt for s in WORLD.prompts("eval", 400)}
    assert len(corpus) == 900 and corpus == tokenizer_corpus(WORLD, 900) and not set(corpus) & held


def test_bad_split_name_raises():
    with pytest.raises(ValueError, match="split must be one of"):
        WORLD.prompts("test", 3)
