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
    # task.prompts are the RL prompts (not the preference contexts), less those the evaluation holds
    rl = [json.loads(x) for x in (out / "data" / "rl_prompts.jsonl").read_text().splitlines()]
    split = json.loads((out / "data" / "split.json").read_text())["contexts"]
    assert rl and {r["id"] for r in rl} <= {f"p{i}" for i in range(len(ASKS))}
    assert m["split"]["rl_prompts_from"] == "task.prompts"
    assert not set(split["rl_prompts"]) & set(split["eval_prompts"])
    assert len(rl) == min(8, len(ASKS) - m["split"]["task_prompts_held_out"])  # task.n_rl=8 here
    sft_rows = [json.loads(x) for x in (out / "data" / "sft.jsonl").read_text().splitlines()]
    assert {r["responses"][0] for r in sft_rows} <= set(SAFE)  # the user's SFT data feeds ptx
    for policy in ("ppo", "dpo"):
        j = m["evaluate"][policy]["judge_rm"]
        assert j["win"] + j["tie"] + j["loss"] == m["evaluate"]["n_prompts"]
    assert m["run"]["profile"] == "files"
    html = (out / "report.html").read_text()
    assert "judge RM, not gold" in html and "could not render" not in html
    assert "harmless" not in html and "Harmful" not in html  # the user's data is no HH-RLHF
    assert "Held-out prompts of your preference file" in html


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


def test_the_files_profile_trains_on_the_gpu_in_bf16_when_there_is_one(monkeypatch):
    """device=auto: CUDA when torch sees a GPU, and every trainer's precision resolves to bf16 there;
    the demo and real profiles stay the CPU recipes they are (device=cpu, said in their help)."""
    import torch

    from chatglm_rlhf.pipeline.run import load_pipeline_config
    from chatglm_rlhf.utils.training import resolved_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cfg = load_pipeline_config(None, ["model=m", "trust_remote_code=true"], profile="files")
    assert cfg.device == "cuda"
    sections = [cfg.ppo, cfg.pg, cfg.dpo, cfg.rm_train, cfg.judge_rm_train]
    assert all(not s.cpu for s in sections)
    assert {resolved_precision(s.mixed_precision, s.cpu) for s in sections} == {"bf16"}
    assert all(s.trust_remote_code for s in sections)  # one run-level key, not five
    for profile in ("smoke", "real-smoke"):
        other = load_pipeline_config(None, [], profile=profile)
        assert other.device == "cpu" and other.ppo.cpu and other.dpo.cpu, profile


def test_the_files_profile_on_a_cpu_only_machine_and_device_cuda_without_a_gpu(monkeypatch):
    import torch

    from chatglm_rlhf.errors import ConfigError
    from chatglm_rlhf.pipeline.run import load_pipeline_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_pipeline_config(None, ["model=m"], profile="files")
    assert cfg.device == "cpu" and cfg.ppo.cpu and cfg.rm_train.cpu
    with pytest.raises(ConfigError, match="device=cuda"):
        load_pipeline_config(None, ["model=m", "device=cuda"], profile="files")


def test_files_help_shows_device_auto_and_no_cpu_only_section(capsys):
    from chatglm_rlhf.config import help_lines
    from chatglm_rlhf.pipeline.run import default_config, get_profile
    from chatglm_rlhf.policy.registry import with_algorithm_sections

    lines = help_lines(with_algorithm_sections(get_profile("files").config), instance=default_config("files"))
    text = "\n".join(lines)
    assert "  device = 'auto'" in text
    assert not [x for x in lines if ".cpu = True" in x], [x for x in lines if ".cpu = True" in x]


def test_task_prompts_whose_context_is_held_out_never_reach_rl(tmp_path):
    from chatglm_rlhf.data.io import write_jsonl
    from chatglm_rlhf.data.schema import DialogueSample
    from chatglm_rlhf.data.splits import context_key
    from chatglm_rlhf.tasks.files.task import FilesSettings, FilesTask

    users = [DialogueSample(id=f"p{i}", prompt=f"question {i}?") for i in range(4)]
    write_jsonl(tmp_path / "pref_prompts.jsonl", users)
    held = {"eval_prompts": [context_key(users[1])], "heldout": [context_key(users[1])],
            "dev": [context_key(users[2])], "judge_train": [context_key(users[3])], "rl_prompts": []}  # fmt: skip
    (tmp_path / "split.json").write_text(json.dumps({"contexts": held}))
    m = FilesTask(FilesSettings(preferences="x.jsonl", n_rl=0))._user_rl_prompts(tmp_path)
    rl = [json.loads(x)["id"] for x in (tmp_path / "rl_prompts.jsonl").read_text().splitlines()]
    assert rl == ["p0"] and m["task_prompts_held_out"] == 3
    assert json.loads((tmp_path / "split.json").read_text())["contexts"]["rl_prompts"] == [
        context_key(users[0])
    ]


def test_too_few_comparisons_say_the_parts_sizes_and_how_many_are_needed(tmp_path):
    from chatglm_rlhf.data.parts import write_parts
    from chatglm_rlhf.data.schema import Comparison
    from chatglm_rlhf.errors import UserError
    from chatglm_rlhf.tasks.files.task import FilesSettings

    comps = [Comparison(f"s{i}", f"question {i}?", "a", "b", "a") for i in range(3)]
    with pytest.raises(
        UserError,
        match=r"3 comparisons over 3 dialogue contexts .* \(got: rm_train \d+, .*about \d+ contexts",
    ):
        write_parts(comps, tmp_path, FilesSettings(), "prefs.jsonl")


def test_recipe_paths_are_read_from_the_recipes_folder(tmp_path, monkeypatch):
    from chatglm_rlhf.pipeline.run import load_pipeline_config

    (tmp_path / "proj" / "data").mkdir(parents=True)
    for name in ("p.jsonl", "prefs.jsonl"):
        (tmp_path / "proj" / "data" / name).write_text("{}\n")
    recipe = tmp_path / "proj" / "mine.yaml"
    recipe.write_text(
        "profile: files\nmodel: sft_model\ntask: {prompts: data/p.jsonl, preferences: data/prefs.jsonl}\n"
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the paths are the recipe's neighbours, not the cwd's
    cfg = load_pipeline_config(str(recipe), [])
    assert cfg.task.prompts == str(tmp_path / "proj" / "data" / "p.jsonl")
    assert cfg.task.preferences == str(tmp_path / "proj" / "data" / "prefs.jsonl")
    assert cfg.model == "sft_model"  # not next to the recipe: as written (the working directory's)
