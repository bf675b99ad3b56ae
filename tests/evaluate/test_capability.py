"""The capability probe: each checker on hand-written replies, scoring totals, and a run on a tiny model."""

from __future__ import annotations

import pytest

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.evaluate.capability import (
    PROBE,
    arithmetic,
    fact,
    json_list,
    json_object,
    one_word,
    run_probe,
    score_probe,
    three_items,
)
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer


@pytest.mark.parametrize(
    "reply, ok",
    [
        ("The capital of Australia is Canberra.", True),
        ("Many think it is Sydney, but it is Canberra.", False),  # wrong answer first
        ("It's not Sydney: **Canberra**!", False),
        ("canberra", True),
        ("Canberras", False),  # whole words only
        ("I don't know.", False),
    ],
)
def test_fact_first_mention(reply, ok):
    assert fact(["Canberra"], ["Sydney"])(reply)[0] is ok


@pytest.mark.parametrize(
    "reply, ok",
    [
        ("7 + 5 = 12", True),
        ("The answer is 12.", True),
        ("7 + 5 = 13. Sorry, 12.", False),
        ("twelve", False),  # digits only, documented
        ("7 + 5", False),
        ("12.0", True),
    ],
)
def test_arithmetic_first_new_number(reply, ok):
    assert arithmetic(12, "What is 7 + 5?")(reply)[0] is ok


def test_arithmetic_reads_thousands_separators():
    assert arithmetic(1000, "What is 999 + 1?")("999 + 1 = 1,000")[0]


@pytest.mark.parametrize(
    "reply, ok",
    [
        ('{"capital": "Madrid"}', True),
        ('Sure!\n```json\n{"capital": "madrid"}\n```', True),
        ('{"capital": "Barcelona"}', False),
        ('{"city": "Madrid"}', False),
        ("{'capital': 'Madrid'}", False),  # not JSON
        ("Madrid", False),
    ],
)
def test_json_object(reply, ok):
    assert json_object({"capital": ["Madrid"]})(reply)[0] is ok


def test_json_numbers_and_lists():
    assert json_object({"age": [30]})('{"age": 30}')[0]
    assert json_object({"age": [30]})('{"age": "30"}')[0]
    assert not json_object({"age": [30]})('{"age": 31}')[0]
    assert json_object({"animals": None})('{"animals": ["cat", "dog"]}')[0]
    assert json_list([2, 4, 6])("Here: [2, 4, 6]")[0]
    assert not json_list([2, 4, 6])("[2, 4, 6, 8]")[0]


@pytest.mark.parametrize(
    "reply, ok",
    [("Yellow.", True), ("**yellow**", True), ('"Yellow"', True), ("It is yellow.", False), ("Green", False)],
)
def test_one_word(reply, ok):
    assert one_word(["yellow"])(reply)[0] is ok


@pytest.mark.parametrize(
    "reply, ok",
    [
        ("Here are three:\n1. Red\n2. Blue\n3. Yellow\nThese mix into others.", True),
        ("- red\n- blue\n- yellow", True),
        ("Red, blue and yellow.", True),
        ("The primary colours are:\n\nred, blue, yellow", True),
        ("Sure: red, blue, yellow", True),
        ("The colours are:\n\nred, red,", False),
        ("Red, blue, yellow, green", False),
        ("1. Red\n2. Red\n3. Blue", False),
        ("1. Red\n2. Blue\n3. Purple", False),
    ],
)
def test_three_items(reply, ok):
    assert three_items(vocabulary=["red", "blue", "yellow"])(reply)[0] is ok


def test_score_probe_totals_and_alignment():
    perfect = {
        "fact1": "Paris.",
        "arith1": "12",
        "json1": '{"capital": "Madrid"}',
        "word1": "Yellow",
        "list1": "red, blue, yellow",
    }
    items = [it for it in PROBE if it.id in perfect]
    replies = dict(perfect)
    result = score_probe(replies, items)
    assert result["overall"] == 1.0 and result["correct"] == 5 and result["total"] == 5
    replies["json1"] = "Madrid"
    result = score_probe([replies[it.id] for it in items], items)
    assert result["overall"] == pytest.approx(0.8)
    assert result["by_kind"]["json"] == {"correct": 0, "total": 1, "accuracy": 0.0}
    assert result["macro"] == pytest.approx(0.8)
    assert [r["id"] for r in result["items"]] == [it.id for it in items]
    assert result["items"][2]["reason"].startswith("no parseable JSON")
    with pytest.raises(UserError, match="3 responses for 5"):
        score_probe(["a", "b", "c"], items)


def test_builtin_probe_shape():
    kinds = {it.kind for it in PROBE}
    assert kinds == {"fact", "arithmetic", "json", "one_word", "list"}
    assert 30 <= len(PROBE) <= 40 and len({it.id for it in PROBE}) == len(PROBE)
    assert score_probe([""] * len(PROBE))["correct"] == 0  # an empty reply never passes


def test_run_probe_on_tiny_model_is_greedy_and_deterministic():
    tok = train_tokenizer([it.question for it in PROBE] * 3, vocab_size=300)
    model = build_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    items = PROBE[:6]
    settings = GenerationSettings(max_new_tokens=4, greedy=False, batch_size=3)
    first = run_probe(model, tok, settings, items)
    second = run_probe(model, tok, settings, items)
    assert first["total"] == 6 and first["max_new_tokens"] == 4
    assert [r["response"] for r in first["items"]] == [r["response"] for r in second["items"]]
    assert all("finished" in r for r in first["items"])
