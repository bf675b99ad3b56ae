"""Feedback rounds in the annotation app: migration 0004 (samples.round), a round's batch loaded and
exported with its round and answer models, per-round progress, and `annotate batch`'s selection."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text

from chatglm_rlhf.collect.annotate import export, service
from chatglm_rlhf.collect.annotate.db import Database, alembic_config, head_revision, migrate
from chatglm_rlhf.collect.annotate.models import Item, Sample
from chatglm_rlhf.collect.annotate.stats import format_stats, project_stats
from chatglm_rlhf.data.schema import DialogueSample


def _batch_row(i: int, rnd: int = 2, pairs=((0, 2),), models=("ppo", "ppo", "ppo")) -> dict:
    return {"id": f"s{i}", "prompt": f"Prompt {i}", "responses": [f"r{i}.{j} (round {rnd})" for j in range(3)],
            "meta": {"round": rnd, "pairs": [list(p) for p in pairs], "models": list(models)}}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, helpers, repo_script):
    if request.param == "sqlite":
        yield str(tmp_path / "r.db")
        return
    with helpers.scratch_postgres(repo_script("benchmarks/annotate_load.py")) as url:
        yield url


def test_an_old_database_upgrades_and_its_samples_are_round_1(db_url):
    """A database at 0003 with a loaded sample: after the migration the sample is round 1, and the same
    id can come back in round 2 (unique per project and round, no longer per project)."""
    from alembic import command

    db = Database(db_url)
    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    with db.engine.begin() as conn:
        pid = conn.execute(
            text(
                "INSERT INTO projects (name, guidelines_md, guidelines_version, overlap, pair_mode, created_at) "
                "VALUES ('old', '', 1, 1, 'all', CURRENT_TIMESTAMP) RETURNING id"
            )
        ).scalar()
        conn.execute(text("INSERT INTO samples (project_id, sample_id, prompt, history, responses, meta) "
                          "VALUES (:p, 's0', 'Prompt 0', '[]', '[\"x\", \"y\"]', '{}')"), {"p": pid})  # fmt: skip
    assert migrate(db) == ("0003", head_revision()) and head_revision() == "0004"
    with db.read() as s:
        assert s.scalars(select(Sample.round)).all() == [1]
    with db.write() as s:
        project = service.get_project(s, "old")
        report = service.load_samples(s, project, [DialogueSample.from_dict(_batch_row(0, pairs=((0, 1),)))])
    assert report.samples_added == 1 and report.already_loaded == 0 and report.rounds == {2}
    with db.read() as s:
        assert sorted(s.execute(select(Sample.sample_id, Sample.round)).all()) == [("s0", 1), ("s0", 2)]
    db.dispose()


@pytest.fixture
def rounds_db(env, helpers, tmp_path):
    """``env``'s round-1 project ``demo`` plus a round-2 batch of 3 samples, 1 chosen pair each."""
    path = helpers.write_candidates(tmp_path / "batch_r2.jsonl", [_batch_row(i) for i in range(3)])
    lines, report = service.load_file(env.db, str(path), "demo", overlap=2, pair_mode="all")
    assert report.samples_added == 3 and report.items_added == 3 and "(round 2)" in report.lines()[0]
    return env


def test_a_batch_brings_only_its_pairs_in_its_round(rounds_db):
    with rounds_db.db.read() as s:
        rows = s.execute(select(Sample.sample_id, Sample.round, Item.idx_a, Item.idx_b).join(
            Item, Item.sample_pk == Sample.id).where(Sample.round == 2)).all()  # fmt: skip
    # s0..s2 are also round-1 samples of the project: both rounds coexist, the batch's pairs alone.
    assert sorted(rows) == [(f"s{i}", 2, 0, 2) for i in range(3)]
    assert rounds_db.count(Item) == 12 + 3


def test_export_carries_the_round_and_answer_models(rounds_db, helpers):
    api = rounds_db.api("ann1")
    rounds = []
    while (r := api.get("/api/v1/projects/demo/next")).status_code == 200:
        item = r.json()
        rounds.append(item["round"])
        body = {"idempotency_key": f"round-key-{len(rounds):04d}", "overall": 2, "scores": {}}
        body["scores"] = {side: dict.fromkeys(item["criteria"], 4) for side in ("left", "right")}
        assert (
            api.post(f"/api/v1/assignments/{item['assignment_id']}/annotation", json=body).status_code == 201
        )
    assert sorted(rounds) == [1] * 12 + [2] * 3
    with rounds_db.db.read() as s:
        project = service.get_project(s, "demo")
        second = export.comparisons(s, project, round_=2)
        everything = export.comparisons(s, project)
        st = project_stats(s, project)
    assert len(second) == 3 and len(everything) == 15
    assert all(c.meta["round"] == 2 and c.meta["model_a"] == c.meta["model_b"] == "ppo" for c in second)
    assert all(c.response_a.endswith("(round 2)") and c.meta["pair"] == [0, 2] for c in second)
    first = [c for c in everything if c.meta["round"] == 1]
    assert len(first) == 12 and not any("model_a" in c.meta for c in first)  # round 1's candidates said none
    assert [(r.round, r.items, r.done, r.target) for r in st.rounds] == [(1, 12, 12, 24), (2, 3, 3, 6)]
    assert "rounds: round 1 12/24 (50.0%), round 2 3/6 (50.0%)" in format_stats(st)
    assert st.to_dict()["rounds"][1]["progress"] == 0.5


def test_the_round_flag_and_the_files_meta_round_must_agree(env, helpers, tmp_path):
    rows = [_batch_row(0), {"id": "plain", "prompt": "P", "responses": ["a", "b"]}]
    path = helpers.write_candidates(tmp_path / "mixed.jsonl", rows)
    _, report = service.load_file(env.db, str(path), "r3", overlap=1, pair_mode="all", round_=3)
    assert report.samples_added == 1 and len(report.rejected) == 1
    assert "meta round 2, but this load is for round 3" in report.rejected[0]
    with env.db.read() as s:  # the sample without a meta round takes the flag's
        assert s.execute(select(Sample.sample_id, Sample.round).where(Sample.sample_id == "plain")).one() == (
            "plain", 3)  # fmt: skip
    bad = helpers.write_candidates(tmp_path / "bad.jsonl", [_batch_row(1, pairs=((2, 0),))])
    _, report = service.load_file(env.db, str(bad), "r3", overlap=1, pair_mode="all")
    assert report.samples_added == 0 and "meta pairs must be" in report.rejected[0]


def test_cli_load_and_export_with_round(env, helpers, tmp_path, capsys):
    from chatglm_rlhf.cli.main import main

    path = helpers.write_candidates(
        tmp_path / "b.jsonl", [{"id": "x", "prompt": "P", "responses": ["a", "b"]}]
    )
    db = str(env.tmp / "annotate.db")
    assert main(["annotate", "load", str(path), "--project", "demo", "--round", "4", "--db", db]) == 0
    assert "(round 4)" in capsys.readouterr().out
    out = tmp_path / "r4.jsonl"
    assert main(["annotate", "export", "--project", "demo", "--round", "4", "--db", db, "-o", str(out)]) == 0
    assert out.read_text() == ""  # nothing annotated in round 4 yet; other rounds left out
    assert main(["annotate", "project", "list", "--db", db]) == 0
    assert "round 1 0/24 (0.0%), round 4 0/2 (0.0%)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["annotate", "load", str(path), "--project", "demo", "--round", "0", "--db", db])


class Fixed:
    """A reward model with hand-made scores: {answer text: score}."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table

    def score(self, samples, responses):
        return [self.table[r] for r in responses]


def _cands():
    from chatglm_rlhf.data.schema import DialogueSample

    return [
        DialogueSample("p0", "Q0", responses=["a", "b", "c"]),
        DialogueSample("p1", "Q1", responses=["d", "e"]),
    ]


def test_uncertainty_picks_the_pairs_the_members_disagree_on():
    """Two members. Pair p0 (a, b): one says a by 2, the other b by 2 (disagree); (a, c), (b, c) and
    p1 (d, e): both agree by 4. Disagreement (std of σ(s_a - s_b)) ranks (a, b) first."""
    from chatglm_rlhf.collect.batch import batch_records, choose

    m1 = Fixed({"a": 2.0, "b": 0.0, "c": -4.0, "d": 4.0, "e": 0.0})
    m2 = Fixed({"a": 0.0, "b": 2.0, "c": -4.0, "d": 4.0, "e": 0.0})
    sel = choose(_cands(), 1, "uncertainty", [m1, m2], "disagreement")
    assert sel.pairs == [(0, 0, 1), (0, 0, 2), (0, 1, 2), (1, 0, 1)] and sel.chosen == [(0, 0, 1)]
    import math

    s = 1 / (1 + math.exp(-2))  # σ(2); the members' preferences are σ(2) and σ(-2) = 1 - σ(2)
    assert sel.scores[0] == pytest.approx(s - 0.5, abs=1e-6)  # population std of {s, 1 - s}
    assert sel.scores[3] == pytest.approx(0.0, abs=1e-6)
    [rec] = batch_records(_cands(), sel, round_=2, model="ppo_r2")
    assert rec.id == "p0" and rec.meta == {"round": 2, "pairs": [[0, 1]], "models": ["ppo_r2"] * 3,
                                           "uncertainty": [round(s - 0.5, 6)]}  # fmt: skip


def test_batch_command_writes_what_load_reads(env, tmp_path, monkeypatch, capsys):
    from chatglm_rlhf.cli.main import main
    from chatglm_rlhf.collect.annotate import batch_cli
    from chatglm_rlhf.data.io import write_jsonl

    cands = tmp_path / "cands.jsonl"
    write_jsonl(cands, _cands())
    for d in ("rm1", "rm2"):
        (tmp_path / d).mkdir()
    members = [Fixed({"a": 2.0, "b": 0.0, "c": -4.0, "d": 4.0, "e": 0.0}),
               Fixed({"a": 0.0, "b": 2.0, "c": -4.0, "d": 4.0, "e": 0.0})]  # fmt: skip
    monkeypatch.setattr(batch_cli, "_scorers", lambda paths, *a: iter(members[: len(paths)]))
    out = tmp_path / "batch.jsonl"
    rms = f"{tmp_path / 'rm1'},{tmp_path / 'rm2'}"
    args = ["annotate", "batch", str(cands), "-o", str(out), "--budget", "2", "--overlap", "2"]
    assert main([*args, "--select", "uncertainty", "--rm", rms, "--round", "2", "--model", "ppo"]) == 0
    [rec] = [json.loads(x) for x in out.read_text().splitlines()]
    assert (
        rec["meta"]["pairs"] == [[0, 1]]
        and rec["meta"]["round"] == 2
        and "1 of 4 candidate pairs" in capsys.readouterr().out
    )
    _, report = service.load_file(env.db, str(out), "demo", overlap=2, pair_mode="all")
    assert report.items_added == 1 and report.rounds == {2}
    assert main([*args, "--budget", "6", "--select", "random", "--seed", "1"]) == 0  # 3 of the 4 pairs
    assert sum(len(json.loads(x)["meta"]["pairs"]) for x in out.read_text().splitlines()) == 3
    assert main([*args, "--select", "uncertainty", "--rm", str(tmp_path / "rm1")]) == 2  # an ensemble of one
    assert "two or more reward model folders" in capsys.readouterr().err
