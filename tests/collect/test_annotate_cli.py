"""The ``annotate`` commands: help with defaults, init-db, load, user add, export, stats, errors."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from chatglm_rlhf.collect.annotate import cli
from chatglm_rlhf.errors import UserError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser)
    args = parser.parse_args(argv)
    return args.func(args)


def test_register_adds_annotate_with_defaults_in_help(capsys):
    parser = argparse.ArgumentParser(prog="chatglm-rlhf")
    cli.register(parser.add_subparsers())
    for argv in (
        ["annotate", "serve", "--help"],
        ["annotate", "load", "--help"],
        ["annotate", "export", "--help"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: 127.0.0.1)" in out and "(default: 8000)" in out
    assert "(default: 3)" in out and "(default: all)" in out and "(default: ours)" in out
    assert "(default: annotate.db)" in out or "CHATGLM_RLHF_ANNOTATE_DB" in out


def test_cli_end_to_end(tmp_path, helpers, fast_hash, monkeypatch, capsys):
    db = str(tmp_path / "a.db")
    assert _run(["init-db", "--db", db]) == 0
    assert "migrated from empty to schema 0004" in capsys.readouterr().out
    assert _run(["migrate", "--db", db]) == 0
    assert "already at schema 0004" in capsys.readouterr().out
    cands = helpers.write_candidates(tmp_path / "c.jsonl", helpers.candidates(n=3, k=3))
    guide = tmp_path / "g.md"
    guide.write_text("# Our rules\n", encoding="utf-8")
    assert _run(["load", str(cands), "--project", "p1", "--db", db, "--overlap", "1", "--pairs", "adjacent",
                 "--guidelines", str(guide)]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "samples added 3, pairs added 6" in captured.out and "read 3, kept 3, rejected 0" in captured.err
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert _run(["user", "add", "alice", "--db", db, "--password-stdin", "--token"]) == 0
    out = capsys.readouterr().out
    assert "user alice (annotator) created" in out and "API token (shown once): cra_" in out
    # Annotate one pair through the service and export / stats through the CLI.
    from chatglm_rlhf.collect.annotate import service
    from chatglm_rlhf.collect.annotate.db import Database

    database = Database(db)
    with database.write() as s:
        user, project = service.get_user(s, "alice"), service.get_project(s, "p1")
        assert project.guidelines_md == "# Our rules\n" and project.pair_mode == "adjacent"
        a = service.next_assignment(s, user, project)
        sub = service.Submission("cli-test-key", overall=2, scores_left=dict.fromkeys(service.CRITERIA, 3),
                                 scores_right=dict.fromkeys(service.CRITERIA, 2))  # fmt: skip
        service.submit(s, user, a.id, sub)
    out_path = tmp_path / "export.jsonl"
    assert _run(["export", "--project", "p1", "--db", db, "-o", str(out_path)]) == 0
    rec = json.loads(out_path.read_text())
    assert rec["annotator"] == "alice" and rec["strength"] == 1
    trl_path = tmp_path / "trl.jsonl"
    assert _run(["export", "--project", "p1", "--db", db, "-o", str(trl_path), "--format", "trl"]) == 0
    trl = json.loads(trl_path.read_text())
    chosen, rejected = ("response_a", "response_b") if rec["label"] == "a" else ("response_b", "response_a")
    assert trl["chosen"].strip() == rec[chosen] and trl["rejected"].strip() == rec[rejected]
    capsys.readouterr()
    assert _run(["stats", "--project", "p1", "--db", db, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["done"] == 1 and st["items"] == 6 and st["annotators"][0]["username"] == "alice"
    assert _run(["project", "set", "p1", "--overlap", "2", "--db", db]) == 0
    assert _run(["user", "list", "--db", db]) == 0
    assert "alice\tannotator\tactive" in capsys.readouterr().out
    assert _run(["user", "deactivate", "alice", "--db", db]) == 0
    assert "deactivated; 1 open items released" in capsys.readouterr().out


def test_cli_user_errors(tmp_path, capsys):
    db = str(tmp_path / "a.db")
    with pytest.raises(UserError, match="no such file"):
        _run(["load", str(tmp_path / "missing.jsonl"), "--project", "p", "--db", db])
    with pytest.raises(UserError, match="annotate migrate"):
        _run(["stats", "--project", "p", "--db", str(tmp_path / "fresh.db")])
    _run(["init-db", "--db", db])
    with pytest.raises(UserError, match="no project named"):
        _run(["stats", "--project", "nope", "--db", db])
    with pytest.raises(UserError, match="directory"):
        _run(["init-db", "--db", str(tmp_path / "no" / "such" / "dir.db")])
    with pytest.raises(UserError, match="only sqlite and postgresql"):
        _run(["init-db", "--db", "mysql://x@localhost/db"])
    # main() prints user errors without a traceback and returns 2.
    assert cli.main(["stats", "--project", "nope", "--db", db]) == 2
    assert "error: no project named 'nope'" in capsys.readouterr().err


def test_load_rejects_bad_samples_with_reasons(tmp_path, helpers, capsys):
    db = str(tmp_path / "a.db")
    rows = helpers.candidates(n=2, k=2, xss=False)
    rows.append({"id": "", "prompt": "no id", "responses": ["x", "y"]})
    rows.append({"id": "one", "prompt": "one response", "responses": ["x"]})
    rows.append({"id": "same", "prompt": "identical", "responses": ["x", "x", "y"]})
    rows.append({"id": "long", "prompt": "p", "responses": ["x" * 101, "y"]})
    path = helpers.write_candidates(tmp_path / "c.jsonl", rows)
    assert _run(["load", str(path), "--project", "p", "--db", db, "--max-chars", "100"]) == 0
    out = capsys.readouterr().out
    assert (
        "samples added 3, pairs added 4" in out
        and "rejected 3" in out
        and "identical pairs left out 1" in out
    )
    assert "no 'id'" in out and "needs at least 2 responses" in out and "above the limit of 100" in out


def test_migrate_is_the_one_name_and_init_db_still_works_with_a_notice(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'a.db'}"
    assert _run(["migrate", "--db", db]) == 0
    assert "schema" in capsys.readouterr().out
    assert _run(["init-db", "--db", db]) == 0
    captured = capsys.readouterr()
    assert "already at schema" in captured.out and "init-db` is deprecated" in captured.err


def test_loading_a_preference_file_says_it_is_the_wrong_kind_of_file(tmp_path):
    from chatglm_rlhf.errors import UserError

    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text('{"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}\n' * 3)
    with pytest.raises(UserError, match=r"prefs\.jsonl: a preference file .* not candidates"):
        _run(["load", str(prefs), "--project", "p", "--db", str(tmp_path / "a.db")])
