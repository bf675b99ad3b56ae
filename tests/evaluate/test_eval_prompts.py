"""Evaluation prompts: our samples JSONL, the AlignBench layout (JSONL and JSON array), bad records."""

from __future__ import annotations

import json

import pytest

from chatglm_rlhf.data.io import DataError
from chatglm_rlhf.evaluate.prompts import load_prompts

ALIGNBENCH = [
    {"question_id": 1, "category": "数学计算", "subcategory": "初等数学", "question": "1+1等于几？",
     "reference": "2", "evidences": []},
    {"question_id": 2, "category": "基本任务", "subcategory": "分类", "question": "Classify: apple",
     "reference": "fruit"},
]  # fmt: skip


def _write_lines(path, records):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records)
    )
    return path


def test_alignbench_jsonl(tmp_path):
    bad = {"question_id": 3, "category": "x", "question": ""}
    path = _write_lines(tmp_path / "align.jsonl", [*ALIGNBENCH, bad, "{not json"])
    samples, report = load_prompts(path)
    assert [s.id for s in samples] == ["1", "2"]
    s = samples[0]
    assert s.prompt == "1+1等于几？" and s.category == "数学计算"
    assert s.meta["subcategory"] == "初等数学" and s.meta["reference"] == "2"
    assert s.meta["source"] == "alignbench" and s.meta["evidences"] == []
    assert (report.read, report.kept, len(report.rejected)) == (4, 2, 2)
    assert report.rejected[0].endswith(":3: field 'question' must be a non-empty string")
    assert ":4: invalid JSON" in report.rejected[1]


def test_alignbench_json_array_and_forced_format(tmp_path):
    path = tmp_path / "align.json"
    path.write_text(json.dumps(ALIGNBENCH + [{"category": "x", "question": "no id"}], ensure_ascii=False))
    samples, report = load_prompts(path, fmt="alignbench")
    assert len(samples) == 2 and report.kept == 2
    assert "record 2: missing field 'question_id'" in report.rejected[0]


def test_ours_format_drops_stored_responses_and_fixes_ids(tmp_path):
    recs = [
        {"id": "x", "prompt": "hi", "category": "chat", "responses": ["old"],
         "history": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"id": "x", "prompt": "again"},
        {"prompt": "no id"},
        {"id": "y"},
    ]  # fmt: skip
    samples, report = load_prompts(_write_lines(tmp_path / "p.jsonl", recs))
    assert [s.prompt for s in samples] == ["hi", "again", "no id"]
    assert samples[0].responses == [] and len(samples[0].history) == 2
    assert len({s.id for s in samples}) == 3  # repeated / empty ids made unique
    assert report.rejected and "prompt" in report.rejected[0]


def test_limit_and_missing_file(tmp_path):
    path = _write_lines(tmp_path / "align.jsonl", ALIGNBENCH)
    samples, _ = load_prompts(path, limit=1)
    assert len(samples) == 1
    with pytest.raises(DataError, match="no such file"):
        load_prompts(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="format"):
        load_prompts(path, fmt="mtbench")
