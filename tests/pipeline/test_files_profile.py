"""`chatglm-rlhf pipeline` on a user's own small JSONL files: no Python written, no gold judge."""

from __future__ import annotations

import json

import pytest
from real_fixtures import ASKS, SAFE, TINY, tiny_chat_model, write_hh_file

from chatglm_rlhf.cli.main import main

# The real profile's tiny sizes under the files profile's key for the split (task.* instead of data.*).
FILES_TINY = TINY


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    base = tmp_path_factory.mktemp("user")
    prompts = [
        {"id": f"p{i}", "prompt": f"{a}?", "history": [], "category": "ask"} for i, a in enumerate(ASKS)
    ]
    (base / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    sft = [{**p, "responses": [SAFE[i % len(SAFE)]]} for i, p in enumerate(prompts)]
    (base / "sft.jsonl").write_text("".join(json.dumps(s) + "\n" for s in sft))
    return (
        tiny_chat_model(base / "model"),
        base / "prompts.jsonl",
        base / "sft.jsonl",
        write_hh_file(base / "prefs.jsonl"),
    )


def _recipe(path, model, prompts, sft, prefs):
    lines = ["profile: files", f"model: {model}", "task:", f"  prompts: {prompts}", f"  sft: {sft}"]
    lines += [f"  preferences: {prefs}"] if prefs else []
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pipeline_runs_on_a_user_data_recipe(user_files, tmp_path):
    model, prompts, sft, prefs = user_files
    out = tmp_path / "run"
    recipe = _recipe(tmp_path / "mine.yaml", model, prompts, sft, prefs)
    assert main(["pipeline", "--config", str(recipe), "--out", str(out), *FILES_TINY]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["timing"]) == ["checkpoint", "data", "split", "filter", "rm", "judge_rm", "ppo", "dpo",
                                 "evaluate", "probe"]  # fmt: skip
    assert m["data"]["comparisons"] == 48 and m["data"]["sft_examples"] == len(ASKS) - 1
    assert m["split"]["eval_contexts_seen_in_training"] == 0 and m["split"]["eval_prompts"] >= 3
    sft_rows = [json.loads(x) for x in (out / "data" / "sft.jsonl").read_text().splitlines()]
    assert {r["responses"][0] for r in sft_rows} <= set(SAFE)  # the user's SFT data feeds ptx
    for policy in ("ppo", "dpo"):
        j = m["evaluate"][policy]["judge_rm"]
        assert j["win"] + j["tie"] + j["loss"] == m["evaluate"]["n_prompts"]
    assert m["run"]["profile"] == "files"
    html = (out / "report.html").read_text()
    assert "judge RM, not gold" in html and "could not render" not in html


def test_without_preferences_the_run_stops_for_annotation_then_resumes(user_files, tmp_path, capsys):
    model, prompts, sft, _ = user_files
    out = tmp_path / "run"
    recipe = _recipe(tmp_path / "annotate.yaml", model, prompts, sft, None)
    args = [
        "pipeline",
        "--config",
        str(recipe),
        "--out",
        str(out),
        *FILES_TINY,
        "k=2",
        "generation.max_new_tokens=6",
    ]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "annotate load" in said and "--from split" in said
    assert not (out / "metrics.json").exists() or "evaluate" not in json.loads(
        (out / "metrics.json").read_text()
    )
    cands = [json.loads(x) for x in (out / "data" / "candidates.jsonl").read_text().splitlines()]
    assert len(cands) == len(ASKS) and all(len(c["responses"]) == 2 for c in cands)
    # People compared the candidates; their export lands where the message said.
    hh = write_hh_file(tmp_path / "annotated.jsonl")
    from chatglm_rlhf.data.formats import load_comparisons
    from chatglm_rlhf.data.io import write_jsonl

    write_jsonl(out / "data" / "comparisons.jsonl", load_comparisons(hh)[0])
    assert main([*args, "--from", "split"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert "evaluate" in m and m["split"]["parts"]["rm_train"] > 0


def test_the_shipped_files_recipe_loads_and_names_the_files_profile():
    from pathlib import Path

    from chatglm_rlhf.pipeline.run import load_pipeline_config

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "files.yaml"
    cfg = load_pipeline_config(str(recipe), [])
    assert cfg.profile == "files" and cfg.task.preferences.endswith(".jsonl") and cfg.rm.backbone == "policy"
