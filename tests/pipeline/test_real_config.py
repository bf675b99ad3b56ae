"""The real profile's config: profile defaults, recipe, overrides, and errors that name the key."""

from __future__ import annotations

import pytest
from real_fixtures import load_real_config

from chatglm_rlhf.data.parts import sample_prompts
from chatglm_rlhf.errors import ConfigError, UserError
from chatglm_rlhf.pipeline.profiles.real import RealConfig
from chatglm_rlhf.tasks.hh.task import REPO_ROOT, resolve_data_path


def test_defaults_are_the_documented_choices():
    cfg = load_real_config(None, [])
    assert cfg.profile == "real" and cfg.model == "smollm2"
    assert cfg.rm.backbone == "minilm" and cfg.judge_rm.backbone == "minilm"
    assert cfg.ppo.lora_r > 0 and cfg.ppo.reward_baseline and cfg.ppo.prompt_filter and cfg.ppo.ptx_coef > 0
    assert cfg.dpo.pairs_from == "data"  # the DPO stage sets pairs_from=rm itself
    assert cfg.task.path.startswith("../shared/data/")
    assert cfg.ablations == []


def test_the_shipped_recipe_loads():
    cfg = load_real_config(str(REPO_ROOT / "recipes" / "real" / "smollm2-hh.yaml"), [])
    assert isinstance(cfg, RealConfig) and cfg.profile == "real" and cfg.rm.backbone == "minilm"


def test_recipe_then_overrides_then_profile(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("profile: real-smoke\nppo:\n  steps: 3\n")
    cfg = load_real_config(str(recipe), ["ppo.lr=0.001", "ablations=[ptx]"])
    assert cfg.profile == "real-smoke" and cfg.ppo.steps == 3 and cfg.ppo.lr == 0.001
    assert cfg.task.n_rl == 8  # from the real-smoke profile
    assert cfg.ablations == ["ptx"]


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["ppo.stepz=3"], "stepz"),
        (["task.heldout=1.5"], "task.heldout"),
        (["task.rm_eval=0.4", "task.judge_train=0.4", "task.heldout=0.1"], "leaves under 10%"),
        (["ablations=[length_balance]"], "ablations"),
        (["eval.llm_judge=true", "eval.llm_judge_policies=[ppo_noptx]"], "llm_judge_policies"),
        (["ppo.shared_backbone=false", "ppo.critic_from=auto"], "critic_from"),
        (["task.n_rl=-1"], "task.n_rl"),
        (["profile=huge"], "profile"),
    ],
)
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_real_config(None, overrides)


def test_a_run_without_ppo_loads_while_the_llm_judge_is_off():
    cfg = load_real_config(None, ["algorithms=[pg]"])  # the judge's policy list (ppo) is not trained here
    assert cfg.algorithms == ["pg"] and not cfg.eval.llm_judge and cfg.eval.llm_judge_policies == ["ppo"]
    with pytest.raises(ConfigError, match="llm_judge_policies"):
        load_real_config(None, ["algorithms=[pg]", "eval.llm_judge=true"])


def test_recipe_errors_name_the_file(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("profile: real\nrm:\n  backbon: minilm\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_real_config(str(recipe), [])


def test_missing_data_file_says_where_it_looked(tmp_path):
    with pytest.raises(UserError, match="not found"):
        resolve_data_path(str(tmp_path / "nope.jsonl"))
    f = tmp_path / "x.jsonl"
    f.write_text("{}\n")
    assert resolve_data_path(str(f)) == f.resolve()


def test_sample_prompts_is_seeded_and_bounded():
    items = list(range(50))
    a, b = sample_prompts(items, 10, seed=3), sample_prompts(items, 10, seed=3)
    assert a == b and len(set(a)) == 10
    assert sample_prompts(items, 10, seed=4) != a
    assert sorted(sample_prompts(items, 0, seed=3)) == items


def test_the_cli_picks_the_real_pipeline_from_flag_override_or_recipe(tmp_path):
    import argparse

    from chatglm_rlhf.pipeline.run import profile_name

    def profile_of(a):
        return profile_name(a.config, a.overrides, a.profile)

    recipe = REPO_ROOT / "recipes" / "real" / "smollm2-hh.yaml"
    ns = argparse.Namespace
    assert profile_of(ns(profile="real", overrides=[], config=None)) == "real"
    assert profile_of(ns(profile=None, overrides=["profile=real-smoke"], config=None)) == "real-smoke"
    assert profile_of(ns(profile=None, overrides=[], config=str(recipe))) == "real"
    assert (
        profile_of(ns(profile=None, overrides=[], config=str(REPO_ROOT / "recipes" / "smoke.yaml")))
        == "smoke"
    )
    assert profile_of(ns(profile=None, overrides=[], config=None)) is None
