"""The paths rewritten for the paper's scale give what the whole-list versions gave: streamed, batched
loading; streamed stats; streamed export; the next-item query answered from its index without a sort."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict

import pytest
from sqlalchemy import select, text, update

from chatglm_rlhf.collect.annotate import export, projects, service, stats
from chatglm_rlhf.collect.annotate.agreement import (
    count_cycles,
    krippendorff_alpha,
    majority_agreement,
    mean_pairwise_kappa,
)
from chatglm_rlhf.collect.annotate.db import Database, migrate
from chatglm_rlhf.collect.annotate.models import Annotation, Item, Sample, User


def _annotated(tmp_path, helpers) -> Database:
    """8 samples x 3 responses (24 pairs), overlap 3, four annotators judging through the service:
    ties, both directions, skips and flags, with set times so that medians mean something."""
    db = Database(str(tmp_path / "s.db"))
    migrate(db)
    path = helpers.write_candidates(tmp_path / "c.jsonl", helpers.candidates(n=8, k=3, xss=False))
    service.load_file(db, str(path), "p", overlap=3, pair_mode="all")
    with db.write() as s:
        users = [service.create_user(s, f"u{n}", helpers.password) for n in range(4)]
        project = service.get_project(s, "p")
        for n, user in enumerate(users):
            for step in range(18 - 2 * n):
                a = service.next_assignment(s, user, project)
                if a is None:
                    break
                overall = 1 + (a.item_id * (2 + n % 2) + n) % 5
                sub = service.Submission(
                    f"key-{n}-{step:04d}",
                    skip=(a.item_id + n) % 7 == 0,
                    overall=overall,
                    scores_left=dict.fromkeys(service.CRITERIA, 3),
                    scores_right=dict.fromkeys(service.CRITERIA, 4),
                    flags=["broken"] if (a.item_id + n) % 5 == 0 else [],
                )
                service.submit(s, user, a.id, sub)
        s.execute(update(Annotation).values(time_spent_ms=Annotation.id * 7919 % 60_000))
    return db


def _whole_list_stats(s, project) -> dict:
    """The stats as computed before streaming: every row in a list, dicts of every item."""
    rows = s.execute(
        select(User.username, Annotation.item_id, Annotation.skipped, Annotation.label, Annotation.choice,
               Annotation.time_spent_ms, Item.sample_pk, Item.idx_a, Item.idx_b)
        .join(User, User.id == Annotation.user_id).join(Item, Item.id == Annotation.item_id)
        .where(Annotation.project_id == project.id)
    ).all()  # fmt: skip
    labels, choices = defaultdict(dict), defaultdict(list)
    prefs, times = defaultdict(dict), defaultdict(list)
    for r in rows:
        if r.skipped:
            continue
        labels[r.item_id][r.username] = r.label
        choices[r.item_id].append(r.choice)
        prefs[(r.username, r.sample_pk)][(r.idx_a, r.idx_b)] = r.label
        times[r.username].append(r.time_spent_ms / 1000.0)
    cycles = [count_cycles(p) for p in prefs.values()]
    return {
        "alpha_label": krippendorff_alpha([list(v.values()) for v in labels.values()], "nominal"),
        "alpha_choice": krippendorff_alpha(list(choices.values()), "ordinal"),
        "kappa": mean_pairwise_kappa(labels),
        "majority": majority_agreement(labels),
        "triangles": sum(c for c, _ in cycles),
        "cycles": sum(c for _, c in cycles),
        "complete": sum(1 for c in choices.values() if len(c) >= project.overlap),
        "medians": {u: statistics.median(ts) for u, ts in times.items()},
    }


def test_streamed_stats_equal_the_whole_list_computation(tmp_path, helpers, fast_hash, monkeypatch):
    db = _annotated(tmp_path, helpers)
    monkeypatch.setattr(stats, "STATS_BATCH", 3)  # batch boundaries inside items and samples
    with db.read() as s:
        project = service.get_project(s, "p")
        st = stats.project_stats(s, project)
        ref = _whole_list_stats(s, project)
    assert st.skipped > 0 and st.flagged > 0 and st.triangles_checked > 0 and st.kappa_pairs > 0
    assert st.alpha_label == pytest.approx(ref["alpha_label"])
    assert st.alpha_choice == pytest.approx(ref["alpha_choice"])
    assert (st.kappa_mean, st.kappa_pairs) == pytest.approx(ref["kappa"])
    assert (st.triangles_checked, st.cycles, st.complete_items) == (
        ref["triangles"], ref["cycles"], ref["complete"],
    )  # fmt: skip
    for a in st.annotators:
        assert (a.majority_agree, a.majority_n) == ref["majority"][a.username]
        assert a.median_seconds == ref["medians"][a.username]
    db.dispose()


def test_streamed_export_equals_the_list(tmp_path, helpers, fast_hash, monkeypatch):
    db = _annotated(tmp_path, helpers)
    with db.read() as s:
        whole = [c.to_dict() for c in export.comparisons(s, service.get_project(s, "p"), True)]
    monkeypatch.setattr(export, "EXPORT_BATCH", 2)
    path = tmp_path / "out.jsonl"
    with db.read() as s:
        records = export.iter_comparisons(s, service.get_project(s, "p"), include_skipped=True)
        assert export.write(path, records, "ours") == (len(whole), 0)
    assert [json.loads(line) for line in path.read_text().splitlines()] == whole
    db.dispose()


def _load(tmp_path, helpers, name: str, rows: list[dict]) -> tuple[projects.LoadReport, list, list]:
    db = Database(str(tmp_path / f"{name}.db"))
    migrate(db)
    path = helpers.write_candidates(tmp_path / "c.jsonl", rows)
    _, first = service.load_file(db, str(path), "p", overlap=2, pair_mode="all")
    _, again = service.load_file(db, str(path), "p", overlap=2, pair_mode="all")
    with db.read() as s:
        samples = s.execute(
            select(Sample.sample_id, Sample.prompt, Sample.history, Sample.meta).order_by(Sample.id)
        )
        items = s.execute(
            select(Sample.sample_id, Item.idx_a, Item.idx_b)
            .select_from(Item)
            .join(Sample, Sample.id == Item.sample_pk)
            .order_by(Item.id)
        ).all()
        samples = [tuple(json.dumps(x) for x in r) for r in samples]
    db.dispose()
    assert again.samples_added == 0 and again.already_loaded == first.samples_added
    return first, samples, items


def test_batched_load_equals_one_batch(tmp_path, helpers, monkeypatch):
    rows = helpers.candidates(n=9, k=3, xss=False)
    rows[3]["responses"][2] = rows[3]["responses"][0]  # an identical pair, left out
    rows[5]["responses"] = ["only one"]  # rejected
    rows.insert(7, dict(rows[2], prompt="again"))  # a duplicate id, in a later batch than the first
    whole = _load(tmp_path, helpers, "whole", rows)
    monkeypatch.setattr(projects, "LOAD_BATCH", 2)
    batched = _load(tmp_path, helpers, "batched", rows)
    assert batched == whole
    report = batched[0]
    assert (report.samples_added, report.items_added, report.identical_pairs) == (8, 23, 1)
    assert [r.split(": ", 1)[1] for r in report.rejected] == [
        "sample s5: needs at least 2 responses to compare, has 1",
        f"sample s2: duplicate id (first at {tmp_path / 'c.jsonl'}:3)",
    ]


def test_next_item_query_reads_its_index_without_sorting(env):
    with env.db.read() as s:
        user, project = service.get_user(s, "ann1"), service.get_project(s, "demo")
        query = service.pick_query(user, project).compile(
            s.get_bind(), compile_kwargs={"literal_binds": True}
        )
        plan = " | ".join(str(row[-1]) for row in s.execute(text(f"EXPLAIN QUERY PLAN {query}")))
    assert "ix_items_pick" in plan and "TEMP B-TREE" not in plan, plan


def test_pick_order_is_fullest_first_then_by_id(env, helpers):
    with env.db.write() as s:
        project = service.get_project(s, "demo")
        a1, a2, a3 = (service.get_user(s, f"ann{n}") for n in (1, 2, 3))
        helpers.check_pick_order(s, project, a1, a2, a3)
