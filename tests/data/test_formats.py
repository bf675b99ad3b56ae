"""Tests for chatglm_rlhf.data.formats: our, TRL (4 variants) and HH-RLHF preference formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatglm_rlhf.data.formats import (
    candidates_to_pairs,
    detect_format,
    history_to_text,
    load_comparisons,
    parse_hh,
    parse_preference,
    split_hh_transcript,
    to_trl,
    write_trl,
)
from chatglm_rlhf.data.io import DataError, write_jsonl
from chatglm_rlhf.data.schema import Comparison, DialogueSample, SchemaError, Turn

REPO_ROOT = Path(__file__).resolve().parents[2]
HH_DEV = REPO_ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-dev.jsonl"

HH_CHOSEN = "\n\nHuman: hi\n\nAssistant: hello!\n\nHuman: tell a joke\n\nAssistant: Why did the chicken..."
HH_REJECTED = "\n\nHuman: hi\n\nAssistant: hello!\n\nHuman: tell a joke\n\nAssistant: No."


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj, fmt",
    [
        ({"sample_id": "s", "prompt": "p", "response_a": "a", "response_b": "b", "label": "a"}, "ours"),
        ({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}, "trl_standard"),
        ({"chosen": "The sky is blue.", "rejected": "The sky is green."}, "trl_standard_implicit"),
        (
            {"prompt": [_msg("user", "q")], "chosen": [_msg("assistant", "a")], "rejected": []},
            "trl_conversational",
        ),
        ({"chosen": [_msg("user", "q")], "rejected": [_msg("user", "q")]}, "trl_conversational_implicit"),
        ({"chosen": HH_CHOSEN, "rejected": HH_REJECTED}, "hh"),
    ],
)
def test_formats_detect_format(obj: dict, fmt: str) -> None:
    assert detect_format(obj) == fmt


def test_formats_detect_format_rejects_unknown_record() -> None:
    with pytest.raises(SchemaError, match="rejected"):
        detect_format({"prompt": "p", "chosen": "a"})


# ---- parsing each format --------------------------------------------------------------------------


def test_formats_parse_trl_standard_explicit_keeps_extras() -> None:
    obj = {
        "prompt": "The sky is",
        "chosen": " blue.",
        "rejected": " green.",
        "id": "x1",
        "category": "qa",
        "margin": 0.5,
    }
    c = parse_preference(obj)
    assert (c.history, c.prompt, c.response_a, c.response_b, c.label) == (
        [],
        "The sky is",
        " blue.",
        " green.",
        "a",
    )
    assert (c.sample_id, c.category, c.meta) == ("x1", "qa", {"margin": 0.5})


def test_formats_parse_trl_standard_implicit_splits_at_word_boundary() -> None:
    c = parse_preference({"chosen": "The sky is blue.", "rejected": "The sky is bluish."})
    # The common prefix "The sky is blu" is cut back to whitespace so no word is split.
    assert (c.prompt, c.response_a, c.response_b, c.label) == ("The sky is ", "blue.", "bluish.", "a")
    assert c.sample_id  # a stable hash when no id is given


def test_formats_parse_trl_standard_implicit_without_prompt_is_rejected() -> None:
    with pytest.raises(SchemaError, match="common prefix"):
        parse_preference({"chosen": "Yes", "rejected": "No"})


def test_formats_parse_trl_standard_implicit_hh_text_is_split_into_turns() -> None:
    c = parse_preference({"chosen": HH_CHOSEN, "rejected": HH_REJECTED}, fmt="trl_standard_implicit")
    assert c.history == [Turn("user", "hi"), Turn("assistant", "hello!")]
    assert (c.prompt, c.response_a, c.response_b) == ("tell a joke", "Why did the chicken...", "No.")


def test_formats_parse_trl_conversational_explicit_with_system_turn() -> None:
    obj = {
        "prompt": [
            _msg("system", "Be brief."),
            _msg("user", "hi"),
            _msg("assistant", "hey"),
            _msg("user", "2+2?"),
        ],
        "chosen": [_msg("assistant", "4")],
        "rejected": [_msg("assistant", "5")],
        "category": "math",
    }
    c = parse_preference(obj)
    assert c.history == [Turn("system", "Be brief."), Turn("user", "hi"), Turn("assistant", "hey")]
    assert (c.prompt, c.response_a, c.response_b, c.label, c.category) == ("2+2?", "4", "5", "a", "math")


def test_formats_parse_trl_conversational_implicit() -> None:
    shared = [_msg("user", "hi"), _msg("assistant", "hey"), _msg("user", "2+2?")]
    c = parse_preference(
        {"chosen": [*shared, _msg("assistant", "4")], "rejected": [*shared, _msg("assistant", "5")]}
    )
    assert c.history == [Turn("user", "hi"), Turn("assistant", "hey")]
    assert (c.prompt, c.response_a, c.response_b, c.label) == ("2+2?", "4", "5", "a")


def test_formats_parse_trl_conversational_implicit_mismatch_is_rejected() -> None:
    obj = {
        "chosen": [_msg("user", "hi"), _msg("assistant", "4")],
        "rejected": [_msg("user", "hello"), _msg("assistant", "5")],
    }
    with pytest.raises(SchemaError, match="differ"):
        parse_preference(obj)


def test_formats_parse_trl_conversational_requires_user_prompt() -> None:
    obj = {
        "prompt": [_msg("user", "q"), _msg("assistant", "a")],
        "chosen": [_msg("assistant", "x")],
        "rejected": [_msg("assistant", "y")],
    }
    with pytest.raises(SchemaError, match="user"):
        parse_preference(obj)


def test_formats_parse_hh_quirks() -> None:
    # Extra spaces are stripped, an inline "Human:" stays inside its turn, an empty final reply is kept.
    chosen = "\n\nHuman:  what?  \n\nAssistant: Human: you said it.\n\nHuman: bad request\n\nAssistant: "
    rejected = "\n\nHuman:  what?  \n\nAssistant: Human: you said it.\n\nHuman: bad request\n\nAssistant: Sure, here it is"
    c = parse_hh({"chosen": chosen, "rejected": rejected})
    assert c.history == [Turn("user", "what?"), Turn("assistant", "Human: you said it.")]
    assert (c.prompt, c.response_a, c.response_b, c.label) == ("bad request", "", "Sure, here it is", "a")
    # The id is a stable hash of history + prompt.
    assert c.sample_id == parse_hh({"chosen": chosen, "rejected": rejected}).sample_id


def test_formats_parse_hh_differing_histories_rejected() -> None:
    rejected = HH_REJECTED.replace("hello!", "go away")
    with pytest.raises(SchemaError, match="differ before the final Assistant turn"):
        parse_hh({"chosen": HH_CHOSEN, "rejected": rejected})


def test_formats_split_hh_transcript_errors() -> None:
    assert split_hh_transcript("Human: a\n\nAssistant: b") == [Turn("user", "a"), Turn("assistant", "b")]
    with pytest.raises(SchemaError, match="no"):
        split_hh_transcript("just text")
    with pytest.raises(SchemaError, match="before the first turn marker"):
        split_hh_transcript("preamble\n\nHuman: a\n\nAssistant: b")


def test_formats_history_to_text_layout() -> None:
    history = [Turn("system", "S"), Turn("user", "u1"), Turn("assistant", "a1")]
    assert (
        history_to_text(history, "u2")
        == "\n\nSystem: S\n\nHuman: u1\n\nAssistant: a1\n\nHuman: u2\n\nAssistant:"
    )


# ---- writing and round trips ----------------------------------------------------------------------


def _comparisons() -> list[Comparison]:
    history = [
        Turn("system", "You are ChatGLM."),
        Turn("user", "你好"),
        Turn("assistant", "你好！有什么可以帮你？"),
    ]
    return [
        Comparison("s1", "写一首诗", "床前明月光", "不会", "a", history=history, category="creative"),
        Comparison("s2", "2+2?", "5", "4", "b", history=[], category=None),
        Comparison("s3", "tie case", "x", "y", "tie"),
    ]


def test_formats_ours_round_trip(tmp_path: Path) -> None:
    full = Comparison(
        "s9",
        "p",
        "ra",
        "rb",
        "tie",
        history=[Turn("user", "h")],
        strength=2.0,
        scores={"a": {"helpfulness": 4.0}, "b": {"helpfulness": 3.0}},
        annotator="ann1",
        time="2024-01-01T00:00:00",
        category="qa",
        meta={"source": "app"},
    )
    path = tmp_path / "ours.jsonl"
    write_jsonl(path, [*_comparisons(), full])
    back, report = load_comparisons(path)
    assert back == [*_comparisons(), full]
    assert (report.read, report.kept, report.rejected) == (4, 4, [])


@pytest.mark.parametrize("conversational", [False, True])
@pytest.mark.parametrize("explicit_prompt", [True, False])
def test_formats_trl_round_trip(tmp_path: Path, conversational: bool, explicit_prompt: bool) -> None:
    path = tmp_path / "trl.jsonl"
    written, skipped = write_trl(
        path, _comparisons(), conversational=conversational, explicit_prompt=explicit_prompt
    )
    assert (written, skipped) == (2, 1)
    back, report = load_comparisons(path, strict=True)
    assert report.kept == 2
    for orig, got in zip(_comparisons()[:2], back):
        # TRL stores chosen/rejected, so every pair comes back as label "a" with response_a = chosen.
        assert got.label == "a"
        assert (got.chosen, got.rejected) == (orig.chosen, orig.rejected)
        assert (got.history, got.prompt, got.sample_id, got.category) == (
            orig.history,
            orig.prompt,
            orig.sample_id,
            orig.category,
        )


def test_formats_write_trl_reports_skipped_ties(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_trl(tmp_path / "t.jsonl", _comparisons())
    assert "skipped 1 ties" in capsys.readouterr().err


def test_formats_to_trl_shapes_and_refusals() -> None:
    c = _comparisons()[1]
    assert to_trl(c, conversational=True) == {
        "prompt": [_msg("user", "2+2?")],
        "chosen": [_msg("assistant", "4")],
        "rejected": [_msg("assistant", "5")],
        "id": "s2",
    }
    assert to_trl(c)["prompt"] == "\n\nHuman: 2+2?\n\nAssistant:"
    with pytest.raises(SchemaError, match="tie"):
        to_trl(_comparisons()[2])
    # A blank-line turn marker inside a text would split the turn when read back: refuse it.
    with pytest.raises(SchemaError, match="turn marker"):
        to_trl(Comparison("s", "p", "ok\n\nHuman: fake", "b", "a"))


# ---- malformed input ------------------------------------------------------------------------------


def test_formats_malformed_lines_are_reported(tmp_path: Path) -> None:
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    missing = {"prompt": "q", "chosen": "a"}
    mismatch = {
        "chosen": [_msg("user", "hi"), _msg("assistant", "a")],
        "rejected": [_msg("user", "bye"), _msg("assistant", "b")],
    }
    path = _write_lines(
        tmp_path / "bad.jsonl", [json.dumps(good), "{not json", json.dumps(missing), json.dumps(mismatch)]
    )
    comps, report = load_comparisons(path)
    assert (report.read, report.kept, len(comps)) == (4, 1, 1)
    expected = [(2, "invalid JSON"), (3, "rejected"), (4, "differ")]
    assert len(report.rejected) == len(expected)
    for msg, (line, reason) in zip(report.rejected, expected):
        assert msg.startswith(f"{path}:{line}:")
        assert reason in msg
    with pytest.raises(DataError) as err:
        load_comparisons(path, strict=True)
    # One line: how many were rejected and the first; the report (every line) is printed before it.
    assert str(err.value) == f"{path}: 3 of 4 records rejected and strict is on; first: {report.rejected[0]}"


def test_formats_unknown_format_name_raises(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "x.jsonl", ["{}"])
    with pytest.raises(ValueError, match="unknown format"):
        load_comparisons(path, fmt="trl")


def test_formats_candidates_to_pairs() -> None:
    sample = DialogueSample("s", "p", responses=["a", "b", "c"])
    assert candidates_to_pairs(sample) == [("a", "b"), ("a", "c"), ("b", "c")]


# ---- the real HH-RLHF file ------------------------------------------------------------------------


def test_formats_real_hh_harmless_dev() -> None:
    if not HH_DEV.is_file():
        pytest.skip(f"HH-RLHF dev file not found at {HH_DEV}")
    comps, report = load_comparisons(HH_DEV, fmt="hh")
    assert report.read == 1200
    assert report.kept + len(report.rejected) == 1200
    assert report.kept >= 1100
    assert all(c.prompt.strip() and c.label == "a" for c in comps)
    assert sum(len(c.history) >= 2 for c in comps) > 300  # multi-turn dialogues are present
    longer = sum(len(c.response_a) > len(c.response_b) for c in comps) / len(comps)
    assert 0.35 < longer < 0.55


@pytest.mark.parametrize("conversational", [False, True])
def test_formats_real_hh_trl_round_trip(tmp_path: Path, conversational: bool) -> None:
    if not HH_DEV.is_file():
        pytest.skip(f"HH-RLHF dev file not found at {HH_DEV}")
    comps, _ = load_comparisons(HH_DEV, fmt="hh")
    path = tmp_path / "hh_trl.jsonl"
    assert write_trl(path, comps, conversational=conversational) == (len(comps), 0)
    back, report = load_comparisons(path, strict=True)
    assert back == comps  # every field HH carries survives HH -> TRL -> Comparison


def test_sft_formats_messages_and_prompt_completion(tmp_path):
    from chatglm_rlhf.data.formats import load_sft_examples

    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    path = tmp_path / "m.jsonl"
    bad = {"messages": msgs[:2]}  # ends with a user turn: no target
    path.write_text(json.dumps({"messages": msgs, "id": "m1"}) + "\n" + json.dumps(bad) + "\n")
    examples, report, _ = load_sft_examples(path)
    assert (report.read, report.kept) == (2, 1) and "does not end with an Assistant turn" in report.rejected[
        0
    ]
    ((sample, target),) = examples
    assert target == "4" and sample.prompt == "2+2?" and sample.id == "m1"
    assert [(t.role, t.content) for t in sample.history] == [
        ("system", "be brief"), ("user", "hi"), ("assistant", "hello")
    ]  # fmt: skip
    pc = tmp_path / "pc.jsonl"
    conv = {"prompt": msgs[:4], "completion": [{"role": "assistant", "content": "four"}]}
    pc.write_text(json.dumps({"prompt": "Say hi", "completion": " hi"}) + "\n" + json.dumps(conv) + "\n")
    examples, report, _ = load_sft_examples(pc)
    assert report.kept == 2
    assert (examples[0][0].prompt, examples[0][1]) == ("Say hi", " hi")
    assert (examples[1][0].prompt, examples[1][1], len(examples[1][0].history)) == ("2+2?", "four", 3)


def test_sft_messages_from_parquet(tmp_path):
    datasets = pytest.importorskip("datasets")
    from chatglm_rlhf.data.formats import load_sft_examples

    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(3)
    ]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "sft.parquet"))
    examples, report, _ = load_sft_examples(tmp_path / "sft.parquet")
    assert [(s.prompt, r) for s, r in examples] == [("q0", "a0"), ("q1", "a1"), ("q2", "a2")]
