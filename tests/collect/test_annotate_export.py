"""Export: canonical order, every field kept through export -> import, TRL files."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from chatglm_rlhf.collect.annotate import export, service
from chatglm_rlhf.collect.annotate.models import Annotation, Item
from chatglm_rlhf.data.io import read_comparisons


def _annotate(env, helpers, user: str, n: int, **answer) -> None:
    c = env.client(user)
    page = helpers.start(c)
    for i in range(n):
        extra = dict(answer)
        if i == 1:
            extra.update(action="skip", flags="broken")
        c.post(helpers.form_action(page), data=helpers.answer(page, overall=1 + i % 5, **extra))
        page = c.get("/annotate/demo").text


def _records(env, include_skipped=False):
    with env.db.read() as s:
        return export.comparisons(s, service.get_project(s, "demo"), include_skipped=include_skipped)


def test_export_import_round_trip_preserves_every_field(env, helpers, tmp_path):
    _annotate(env, helpers, "ann1", 6, rationale="why <not>", flags="unsafe")
    _annotate(env, helpers, "ann2", 4)
    records = _records(env, include_skipped=True)
    assert len(records) == 10 and sum(r.meta["skipped"] for r in records) == 2
    path = tmp_path / "out.jsonl"
    written, left_out = export.write(path, records, "ours")
    assert (written, left_out) == (10, 0)
    back, report = read_comparisons(path)
    assert report.kept == 10 and not report.rejected
    assert [b.to_dict() for b in back] == [r.to_dict() for r in records]
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {
        "sample_id", "prompt", "response_a", "response_b", "label", "history", "strength", "scores",
        "annotator", "time", "category", "meta",
    }  # fmt: skip
    assert set(first["meta"]) == {
        "project", "annotation_id", "pair", "display_order", "choice_5pt", "rationale", "flags",
        "time_spent_s", "skipped", "sample_meta", "round",
    }  # fmt: skip
    assert first["meta"]["rationale"] == "why <not>" and first["meta"]["flags"] == ["unsafe"]
    assert first["meta"]["sample_meta"] == {"source": "test", "n": 0}
    assert first["time"].endswith("+00:00") and first["category"] == "open_qa"


def test_export_uses_canonical_pair_order(env, helpers):
    _annotate(env, helpers, "ann1", 5)
    by_id = {r.meta["annotation_id"]: r for r in _records(env)}
    with env.db.read() as s:
        for ann in s.scalars(select(Annotation).where(Annotation.skipped.is_(False))):
            item = s.get(Item, ann.item_id)
            rec = by_id[ann.id]
            assert rec.response_a == item.sample.responses[item.idx_a]
            assert rec.response_b == item.sample.responses[item.idx_b]
            assert rec.meta["pair"] == [item.idx_a, item.idx_b]
            assert rec.meta["display_order"] == (["b", "a"] if ann.swapped else ["a", "b"])
            # The annotator clicked a display position; the label names the canonical response.
            shown_left = rec.meta["display_order"][0]
            overall_display = 6 - ann.choice if ann.swapped else ann.choice
            if overall_display < 3:
                assert rec.label == shown_left
            assert rec.scores is not None and set(rec.scores) == {"a", "b"}


def test_skips_are_left_out_by_default(env, helpers):
    _annotate(env, helpers, "ann1", 3)
    assert len(_records(env)) == 2 and all(not r.meta["skipped"] for r in _records(env))


@pytest.mark.parametrize("fmt", ["trl", "trl-conversational"])
def test_trl_export(env, helpers, tmp_path, fmt):
    formats = pytest.importorskip("chatglm_rlhf.data.formats")
    _annotate(env, helpers, "ann1", 6)  # overall 1..5 with one skip: labels a, (skip), tie, b, b, a
    records = _records(env, include_skipped=True)
    path = tmp_path / "trl.jsonl"
    written, left_out = export.write(path, records, fmt)
    ties_and_skips = sum(1 for r in records if r.label == "tie" or r.meta["skipped"])
    assert written == len(records) - ties_and_skips and left_out == ties_and_skips
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == written
    kept = [r for r in records if r.label != "tie" and not r.meta["skipped"]]
    for row, rec in zip(rows, kept):
        chosen = row["chosen"][-1]["content"] if fmt == "trl-conversational" else row["chosen"].strip()
        assert chosen == rec.chosen.strip()
    back, report = formats.load_comparisons(path)
    assert len(back) == written


def test_export_cli_errors(env):
    with pytest.raises(service.UserError):
        export.write("x.jsonl", [], "csv")
