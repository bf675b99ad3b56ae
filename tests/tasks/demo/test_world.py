"""The demo world's prompts: held-out eval split, reproducibility, histories, gold metadata."""

from __future__ import annotations

import pytest

from chatglm_rlhf.tasks.demo.world import (
    CATEGORIES,
    SPLITS,
    DemoWorld,
    all_specs,
    pool_name,
    split_of,
)

TRAIN_SPLITS = ("sft", "pref", "rl")


def _all_user_texts(samples):
    return {s.prompt for s in samples} | {t.content for s in samples for t in s.history if t.role == "user"}


def test_eval_pool_is_disjoint_from_train_pool_by_key_and_text():
    world = DemoWorld(0)
    train, held = world.pool("sft"), world.pool("eval")
    assert {s.key for s in train}.isdisjoint({s.key for s in held})
    assert {s.prompt for s in train}.isdisjoint({s.prompt for s in held})
    for cat in CATEGORIES:  # every category is represented on both sides
        assert world.pool("eval", cat) and world.pool("rl", cat)
    assert world.pool("pref") == world.pool("rl") == train


def test_sampled_splits_never_share_prompts_or_histories_with_eval():
    world = DemoWorld(3)
    eval_texts = _all_user_texts(world.prompts("eval", 1500))
    for split in TRAIN_SPLITS:
        texts = _all_user_texts(world.prompts(split, 1500))
        assert texts.isdisjoint(eval_texts), split


def test_arithmetic_split_is_by_operands_not_phrasing():
    # "What is 7 + 5?" and "Compute 7 + 5." must land together, so eval tests unseen sums.
    by_key: dict[str, set[str]] = {}
    for spec in all_specs():
        by_key.setdefault(spec.key, set()).add(split_of(spec.key))
    assert all(len(v) == 1 for v in by_key.values())
    arith_keys = [k for k in by_key if k.startswith("arithmetic|")]
    share = sum(split_of(k) == "eval" for k in arith_keys) / len(arith_keys)
    assert 0.12 < share < 0.28


def test_same_seed_reproduces_and_other_seed_differs():
    a = [s.to_dict() for s in DemoWorld(7).prompts("pref", 200)]
    b = [s.to_dict() for s in DemoWorld(7).prompts("pref", 200)]
    c = [s.to_dict() for s in DemoWorld(8).prompts("pref", 200)]
    assert a == b
    assert [s["prompt"] for s in a] != [s["prompt"] for s in c]


def test_prompts_are_prefix_stable_with_unique_ids():
    world = DemoWorld(1)
    long, short = world.prompts("rl", 300), world.prompts("rl", 50)
    assert [s.to_dict() for s in long[:50]] == [s.to_dict() for s in short]
    assert len({s.id for s in long}) == 300
    assert {s.id for s in long}.isdisjoint({s.id for s in world.prompts("sft", 300)})


def test_history_rate_and_shape():
    samples = DemoWorld(0).prompts("sft", 2000)
    with_history = [s for s in samples if s.history]
    assert 0.21 < len(with_history) / len(samples) < 0.29
    for s in with_history:
        assert len(s.history) in (2, 4)
        assert [t.role for t in s.history] == ["user", "assistant"] * (len(s.history) // 2)


def test_category_mix_follows_weights():
    samples = DemoWorld(0).prompts("rl", 4000)
    share = {c: sum(s.category == c for s in samples) / len(samples) for c in CATEGORIES}
    assert share == pytest.approx(
        {"arithmetic": 0.3, "format": 0.25, "facts": 0.25, "harmful": 0.2}, abs=0.03
    )
    only = DemoWorld(0, category_weights={"harmful": 1.0}).prompts("rl", 50)
    assert {s.category for s in only} == {"harmful"}


def test_prompts_are_short_and_gold_is_self_contained():
    for s in DemoWorld(2).prompts("eval", 600):
        assert len(s.prompt.split()) < 20
        gold = s.meta["gold"]
        assert len(gold["reference"].split()) < 30
        assert s.meta["split"] == "eval" and s.category in CATEGORIES
        if s.category == "arithmetic":
            a, b, op = gold["a"], gold["b"], gold["op"]
            assert gold["answer"] == {"+": a + b, "-": a - b, "*": a * b}[op] >= 0
            assert str(gold["answer"]) in gold["reference"]
        elif s.category == "format":
            assert 2 <= gold["count"] <= 5 and len(gold["items"]) >= gold["count"]
        elif s.category == "facts":
            assert gold["answer"] not in gold["distractors"] and gold["answer"] in gold["reference"]
        else:
            assert gold["harmful"] is True


def test_corpus_has_prompts_and_bad_modes_and_no_eval_prompts():
    world = DemoWorld(0)
    corpus = world.corpus(900)
    assert len(corpus) == 900 and corpus == world.corpus(900)
    eval_prompts = {s.prompt for s in world.pool("eval")}
    train_prompts = {s.prompt for s in world.pool("sft")}
    assert not eval_prompts & set(corpus)
    assert sum(t in train_prompts for t in corpus) >= 250
    assert any("#" in t or "@" in t or "%" in t for t in corpus)  # garbled text is present
    assert any("First," in t for t in corpus)  # harmful compliance is present


def test_bad_split_name_raises():
    assert pool_name("rl") == "train" and SPLITS == ("sft", "pref", "rl", "eval")
    with pytest.raises(ValueError, match="split"):
        DemoWorld(0).prompts("test", 3)
