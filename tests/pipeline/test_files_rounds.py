"""Feedback rounds in the files profile: people annotate each round in the app, the run pauses between.

End to end with tiny models: the run stops after round 1's candidates, they are annotated through the
app's HTTP API and exported, ``--from split`` resumes, the run stops again with round 2's batch (the
round-1 policy's answers, the pairs chosen under round.budget), which is annotated the same way, and
``--from merge_r2`` finishes the run. Every command comes from the run's own pause message.
"""

from __future__ import annotations

import json
import shlex

import pytest
from real_fixtures import ASKS, SAFE, TINY, real_ctx, tiny_chat_model, write_hh_file

from chatglm_rlhf.cli.main import main

N_PROMPTS = 30  # enough dialogue contexts for every part of the split
ROUND_ARGS = ["rounds=2", "k=2", "round.k=2", "round.budget=6", "overlap=1", "generation.max_new_tokens=6",
              "task.rm_eval=0.15", "task.heldout=0.15"]  # fmt: skip


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    base = tmp_path_factory.mktemp("rounds")
    prompts = [{"id": f"p{i}", "prompt": f"{ASKS[i % len(ASKS)]} (case {i})?", "history": [], "category": "ask"}
               for i in range(N_PROMPTS)]  # fmt: skip
    (base / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    sft = [{**p, "responses": [SAFE[i % len(SAFE)]]} for i, p in enumerate(prompts)]
    (base / "sft.jsonl").write_text("".join(json.dumps(s) + "\n" for s in sft))
    recipe = base / "rounds.yaml"
    model = tiny_chat_model(base / "model")
    recipe.write_text(f"profile: files\nmodel: {model}\ntask:\n  prompts: {base / 'prompts.jsonl'}\n"
                      f"  sft: {base / 'sft.jsonl'}\n")  # fmt: skip
    return recipe


def _commands(said: str) -> dict[str, list[str]]:
    """The pause message's ``chatglm-rlhf annotate ACTION ...`` lines, as argv by action."""
    lines = [x.strip() for x in said.splitlines() if x.strip().startswith("chatglm-rlhf annotate ")]
    return {shlex.split(x)[2]: shlex.split(x)[1:] for x in lines}


def _annotate_through_the_api(db_path: str, token: str) -> list[dict]:
    """Everything open for the annotator, judged through the JSON API: the items as the API gave them."""
    from fastapi.testclient import TestClient

    from chatglm_rlhf.collect.annotate.app import create_app
    from chatglm_rlhf.collect.annotate.db import Database

    db = Database(db_path)
    seen = []
    with TestClient(create_app(db)) as api:
        api.headers["Authorization"] = f"Bearer {token}"
        while (r := api.get("/api/v1/projects/run/next")).status_code == 200:
            item = r.json()
            seen.append(item)
            overall = 2 if len(item["left"]) <= len(item["right"]) else 4  # never a tie: every pair counts
            body = {"idempotency_key": f"key-{item['assignment_id']:06d}", "overall": overall,
                    "scores": {side: dict.fromkeys(item["criteria"], 3) for side in ("left", "right")}}  # fmt: skip
            posted = api.post(f"/api/v1/assignments/{item['assignment_id']}/annotation", json=body)
            assert posted.status_code == 201, posted.text
        assert r.status_code == 204
    db.dispose()
    return seen


def _annotator(db_path: str, monkeypatch) -> str:
    from chatglm_rlhf.collect.annotate import security, service
    from chatglm_rlhf.collect.annotate.db import Database

    monkeypatch.setattr(security, "SCRYPT_N", 2**10)  # cheap hashing for a test account
    db = Database(db_path)
    with db.write() as s:
        token = service.issue_token(s, service.create_user(s, "alice", "correct-horse-1", "annotator"))
    db.dispose()
    return token


def _rows(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_two_rounds_annotated_in_the_app_with_a_pause_before_each(user_files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = ["pipeline", "--config", str(user_files), "--out", str(out), *TINY, *ROUND_ARGS]
    assert main(args) == 0  # round 1: stops after generate
    cmds = _commands(capsys.readouterr().out)
    assert set(cmds) == {"load", "user", "serve", "export"} and "--round" in cmds["export"]
    assert main(cmds["load"]) == 0
    db = cmds["load"][cmds["load"].index("--db") + 1]
    token = _annotator(db, monkeypatch)
    first = _annotate_through_the_api(db, token)
    assert first and {i["round"] for i in first} == {1}
    assert main(cmds["export"]) == 0
    r1 = _rows(out / "data" / "comparisons.jsonl")
    assert len(r1) == len(first) and all(c["meta"]["round"] == 1 for c in r1)  # none lost, none misplaced

    capsys.readouterr()
    assert main([*args, "--from", "split"]) == 0  # round 1 trains; round 2's batch, then a stop
    said = capsys.readouterr().out
    assert "--from merge_r2" in said and "evaluate" not in json.loads((out / "metrics.json").read_text())
    cmds2 = _commands(said)
    assert cmds2["export"][cmds2["export"].index("--round") + 1] == "2"
    batch = _rows(out / "data" / "batch_r2.jsonl")
    pairs = {(b["id"], b["responses"][i], b["responses"][j]) for b in batch for i, j in b["meta"]["pairs"]}
    assert 0 < len(pairs) <= 6 and all(
        b["meta"]["round"] == 2 and set(b["meta"]["models"]) == {"ppo"} for b in batch
    )
    _round_2_answers_are_the_round_1_policys(user_files, out, batch)

    assert main(cmds2["load"]) == 0
    second = _annotate_through_the_api(db, token)
    assert {i["round"] for i in second} == {2} and len(second) == len(pairs)
    # A whole-project export in round 2's file would put round 1's comparisons in round 2: refused.
    wrong = [*cmds2["export"]]
    del wrong[wrong.index("--round") : wrong.index("--round") + 2]
    assert main(wrong) == 0
    assert main([*args, "--from", "merge_r2"]) == 2
    assert "comparisons of another round" in capsys.readouterr().err
    assert main(cmds2["export"]) == 0
    assert main([*args, "--from", "merge_r2"]) == 0
    said = capsys.readouterr().out  # the terminal's rounds lines: the judge RM's, no gold here
    assert f"round 2: {len(second)} comparisons on ppo's answers (random)" in said
    assert "ppo_r2 judge RM win vs SFT" in said

    r2 = _rows(out / "data" / "comparisons_r2.jsonl")
    assert (
        len(r2) == len(second) and {(c["sample_id"], c["response_a"], c["response_b"]) for c in r2} == pairs
    )
    assert all(c["meta"]["round"] == 2 and c["meta"]["model_a"] == c["meta"]["model_b"] == "ppo" for c in r2)
    upto = _rows(out / "data" / "comparisons_upto_r2.jsonl")
    rm_train = _rows(out / "data" / "rm_train.jsonl")
    assert len(upto) == len(rm_train) + len(r2)
    assert [c["meta"]["round"] for c in upto] == [1] * len(rm_train) + [2] * len(r2)
    assert {c["meta"]["model_a"] for c in upto[: len(rm_train)]} == {"sft"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["round_2"]["comparisons"] == len(r2) and m["round_2"]["pairs_unannotated"] == 0
    assert m["round_2"]["policy"] == "ppo" and "ppo_r2" in m["evaluate"]
    assert [s for s in m["timing"] if s.endswith("_r2")] == [
        "batch_r2",
        "merge_r2",
        "filter_r2",
        "rm_r2",
        "ppo_r2",
    ]
    assert "paused_after" not in m
    assert "could not render" not in (out / "report.html").read_text()


def _round_2_answers_are_the_round_1_policys(recipe, out, batch) -> None:
    """The batch's answers are what models/ppo samples (same prompts and seed), and that policy is not
    the SFT model."""
    import torch

    from chatglm_rlhf.collect.generate import generate_candidates
    from chatglm_rlhf.pipeline.run import load_pipeline_config
    from chatglm_rlhf.pipeline.stages.human_rounds import round_prompts

    cfg = load_pipeline_config(str(recipe), [*TINY, *ROUND_ARGS])
    ctx = real_ctx(cfg, out)
    (ppo, tok), (sft, _) = ctx.load("ppo"), ctx.load("sft")
    prompts, _ = round_prompts(ctx, cfg.round)
    again = generate_candidates(
        ppo, tok, prompts, cfg.round.k, cfg.generation, seed=cfg.task.seed + 200, progress=False
    )
    by_id = {c.id: c.responses for c in again}
    assert all(b["responses"] == by_id[b["id"]] for b in batch)
    assert any(not torch.equal(a, b) for a, b in zip(ppo.state_dict().values(), sft.state_dict().values()))


def test_with_a_preference_file_round_2_asks_people_about_the_ensembles_least_sure_pairs(
    user_files, tmp_path, capsys
):
    """task.preferences is round 1 (no first pause); round 2's batch comes from two bootstrap RMs."""
    recipe = tmp_path / "prefs.yaml"
    prefs = write_hh_file(tmp_path / "prefs.jsonl")
    recipe.write_text(user_files.read_text() + f"  preferences: {prefs}\n")
    out = tmp_path / "run"
    over = ["round.select=uncertainty", "round.members=2", "round.budget=3"]
    assert main(["pipeline", "--config", str(recipe), "--out", str(out), *TINY, *ROUND_ARGS, *over]) == 0
    assert "--from merge_r2" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["timing"])[-1] == "batch_r2" and "generate" not in m["timing"]
    assert {"ens_r2_0", "ens_r2_1"} <= set(
        m["timing"]
    )  # the ensemble: bootstrap resamples of round 1's pairs
    members = [_rows(out / "ens_r2_0" / "train.jsonl"), _rows(out / "ens_r2_1" / "train.jsonl")]
    assert len(members[0]) == len(members[1]) and members[0] != members[1]
    rd = m["round_2"]
    assert rd["select"] == "uncertainty" and rd["selected_pairs"] == 3
    assert rd["uncertainty_selected_mean"] >= rd["uncertainty_all_mean"]  # the least sure pairs, not any
    batch = _rows(out / "data" / "batch_r2.jsonl")
    assert sum(len(b["meta"]["uncertainty"]) for b in batch) == 3
    # A round's settings are in its fingerprint: a new budget redoes its batch (and nothing before it).
    assert (
        main(
            [
                "pipeline",
                "--config",
                str(recipe),
                "--out",
                str(out),
                *TINY,
                *ROUND_ARGS,
                *over,
                "round.budget=2",
            ]
        )
        == 0
    )
    said = capsys.readouterr().out
    assert (
        "[batch_r2] changed since it ran (settings.budget: 3 -> 2)" in said
        and "[ens_r2_1] already done" in said
    )
    assert sum(len(b["meta"]["pairs"]) for b in _rows(out / "data" / "batch_r2.jsonl")) == 2


def _merge_setup(tmp_path, comparisons: list[dict]):
    """A run folder with round 1's rm_train part, round 2's batch and ``comparisons`` as its export."""
    from chatglm_rlhf.pipeline.context import RunContext

    data = tmp_path / "data"
    data.mkdir(parents=True)
    rows = {"rm_train": [{"sample_id": "p0", "prompt": "Q0", "response_a": "x", "response_b": "y", "label": "a"}],
            "batch_r2": [{"id": "p0", "prompt": "Q0", "responses": ["a", "b", "c"],
                          "meta": {"round": 2, "pairs": [[0, 2]], "models": ["m0", "m1", "m2"]}}],
            "comparisons_r2": comparisons}  # fmt: skip
    for name, recs in rows.items():
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return RunContext(cfg=None, out=tmp_path, task=None)


def _comp(a: str, b: str, **meta) -> dict:
    return {"sample_id": "p0", "prompt": "Q0", "response_a": a, "response_b": b, "label": "b", "meta": meta}


def test_merge_fills_round_and_models_and_refuses_other_rounds_and_unknown_pairs(tmp_path):
    from chatglm_rlhf.errors import UserError
    from chatglm_rlhf.pipeline.stages.human_rounds import merge

    ctx = _merge_setup(tmp_path, [_comp("c", "a")])  # the batch's pair (0, 2), answers the other way round
    m = merge(ctx, 2)
    assert (m["comparisons"], m["comparisons_total"], m["batch_pairs"], m["pairs_unannotated"]) == (
        1,
        2,
        1,
        0,
    )
    one, two = _rows(tmp_path / "data" / "comparisons_upto_r2.jsonl")
    assert one["meta"] == {"round": 1, "model_a": "sft", "model_b": "sft"}
    assert two["meta"] == {"round": 2, "model_a": "m2", "model_b": "m0"}  # who wrote a and b, flipped too
    for bad, said in (([_comp("a", "c"), _comp("a", "c", round=1)], "1 comparisons of another round"),
                      ([_comp("a", "b")], "are not pairs of")):  # fmt: skip
        with pytest.raises(UserError, match=said):
            merge(_merge_setup(tmp_path / said[:5], bad), 2)
