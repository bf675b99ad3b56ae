"""A rerun with changed settings or inputs redoes the stages they reach, and says so; nothing is
skipped silently."""

from __future__ import annotations

import json

from test_demo_smoke import TINY

from chatglm_rlhf.cli.main import main
from chatglm_rlhf.pipeline import fingerprint as F


def test_canonical_drops_cosmetic_keys_and_changes_names_the_leaf():
    from chatglm_rlhf.models.generation import GenerationSettings

    a = F.canonical({"sft": {"steps": 120, "progress": True}, "gen": GenerationSettings(max_new_tokens=8)})
    b = F.canonical({"sft": {"steps": 10, "progress": False}, "gen": GenerationSettings(max_new_tokens=8)})
    assert "progress" not in a["sft"] and a["gen"]["max_new_tokens"] == 8
    assert F.changes(a, b) == ["sft.steps: 120 -> 10"]
    assert F.fingerprint(a, {}, "") != F.fingerprint(b, {}, "") and F.fingerprint(a, {}, "") == F.fingerprint(
        a, {}, ""
    )
    assert F.fingerprint(a, {}, "x") != F.fingerprint(a, {}, "")  # an upstream change reaches this stage


def test_a_field_added_later_is_left_out_at_its_default():
    from chatglm_rlhf.reward.filtering import FilterConfig

    # Runs made before balance_within existed have no such key: at its default the tree is theirs.
    assert "balance_within" not in F.canonical(FilterConfig())
    assert F.canonical(FilterConfig(balance_within="slight"))["balance_within"] == "slight"
    assert "balance" in F.canonical(FilterConfig())  # an ordinary field stays at its default too


def test_external_inputs_hash_files_outside_the_run(tmp_path):
    f = tmp_path / "prefs.jsonl"
    f.write_text("a\n")
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "x.jsonl").write_text("b\n")
    got = F.external_inputs({"p": str(f), "q": str(run / "data" / "x.jsonl"), "name": "ppo"}, run)
    assert list(got) == [str(f)]
    before = got[str(f)]
    f.write_text("changed\n")
    assert F.external_inputs({"p": str(f)}, run)[str(f)] != before


def _stages_run(out: str) -> list[str]:
    return [line.split("]")[0][1:] for line in out.splitlines() if line.endswith("] running")]


def test_a_changed_setting_redoes_its_stage_and_every_later_one(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["demo", "--out", str(out), "--profile", "smoke", *TINY, "ablations=[]", "ceiling_n=0"]
    assert main(args) == 0
    first = _stages_run(capsys.readouterr().out)
    assert first[:3] == ["world", "base", "sft"]
    assert main([*args, "progress=true"]) == 0  # cosmetic: nothing is redone
    said = capsys.readouterr().out
    assert _stages_run(said) == [] and "already done" in said
    assert main([*args, "sft.max_steps=3"]) == 0  # TINY trains 4 steps
    said = capsys.readouterr().out
    assert "[sft] changed since it ran (settings.steps: 4 -> 3)" in said
    assert _stages_run(said) == first[2:]  # sft and everything after it, not world or base
    assert main([*args, "sft.max_steps=3", "collect.noise=0.2"]) == 0  # an annotator setting: collect onwards
    said = capsys.readouterr().out
    assert "[collect] changed since it ran" in said and "noise" in said and "[sft] running" not in said
    steps = json.loads((out / "stages" / "sft.done.json").read_text())["metrics"]["steps"]
    assert steps == 3 and json.loads((out / "config.json").read_text())["sft"]["max_steps"] == 3
