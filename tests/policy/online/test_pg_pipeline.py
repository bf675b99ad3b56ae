"""The critic-free trainer in the pipeline: the profiles' `pg` section, the ablation and its report row."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.evaluate.report.ablations import ablation_rows
from chatglm_rlhf.evaluate.report.context import ReportContext
from chatglm_rlhf.pipeline.profiles.base import ABLATIONS, StageBuilder, critic_free
from chatglm_rlhf.pipeline.run import load_pipeline_config

ESTIMATORS = critic_free()


@pytest.mark.parametrize("profile", ["default", "smoke", "real-smoke"])
def test_profiles_run_pg_as_an_algorithm_and_as_the_critic_free_ablation(profile):
    overrides = ["algorithms=[ppo,pg]", "ablations=[critic_free]", "pg.estimator=rloo"]
    cfg = load_pipeline_config(None, overrides, profile=profile)
    assert cfg.pg.estimator == "rloo"
    # the same number of responses per iteration as PPO
    assert cfg.pg.rollout_batch_size * cfg.pg.k == cfg.ppo.rollout_batch_size
    builder = StageBuilder(SimpleNamespace(cfg=cfg))
    names = [s.name for s in (*builder.policies(), *builder.ablations())]
    assert names == ["ppo", "pg", *(f"pg_{e}" for e in ESTIMATORS)]
    assert builder.evaluated() == names


def test_pipeline_pg_errors_name_the_key():
    with pytest.raises(ConfigError, match="estimator"):
        load_pipeline_config(None, ["pg.estimator=ppo"], profile="smoke")
    with pytest.raises(ConfigError, match="ablations"):
        load_pipeline_config(None, ["ablations=[critic_free, nope]"], profile="smoke")


def test_the_ablation_trains_every_estimator():
    assert ABLATIONS["critic_free"].policy_names() == tuple(f"pg_{e}" for e in ESTIMATORS)


def test_report_row_per_estimator_next_to_ppo():
    metrics = {
        "ppo": {"steps": 4, "seconds": 8.0, "reward_std": 0.2},
        "pg_grpo": {"steps": 4, "seconds": 4.0, "estimator": "grpo", "reward_std": 0.1},
        "evaluate": {"ppo": {"gold_win_rate_vs_sft": 0.7}, "pg_grpo": {"gold_win_rate_vs_sft": 0.65}},
    }
    rows = [r for r in ablation_rows(ReportContext(Path("."), metrics, {})) if r["name"] == "critic-free"]
    assert [(r["setting"], r["gold_win_rate"], r["seconds_per_iteration"]) for r in rows] == [
        ("PPO (critic)", 0.7, 2.0),
        ("pg_grpo: grpo", 0.65, 1.0),
    ]
    assert not [
        r for r in ablation_rows(ReportContext(Path("."), {"ppo": {}}, {})) if r["name"] == "critic-free"
    ]


def test_every_online_algorithm_with_snapshots_gets_its_curve_stage():
    from chatglm_rlhf.pipeline.profiles.real import JudgedStages

    cfg = load_pipeline_config(None, ["algorithms=[ppo,pg]", "pg.snapshot_every=1"], profile="real-smoke")
    names = [s.name for s in JudgedStages(SimpleNamespace(cfg=cfg)).curve(0, cfg.task)]
    assert names == ["ppo_curve", "pg_curve"]  # real-smoke snapshots PPO; pg asked to here
    cfg = load_pipeline_config(
        None, ["algorithms=[ppo,pg]", "ppo.snapshot_every=0", "pg.snapshot_every=0"], profile="real-smoke"
    )
    assert [s.name for s in JudgedStages(SimpleNamespace(cfg=cfg)).curve(0, cfg.task)] == []


def test_the_curve_stage_keeps_the_fingerprint_of_runs_made_before_it_served_every_algorithm():
    from chatglm_rlhf.pipeline.profiles.real import JudgedStages

    cfg = load_pipeline_config(None, ["algorithms=[ppo,dpo]"], profile="real-smoke")
    (stage,) = JudgedStages(SimpleNamespace(cfg=cfg)).curve(0, cfg.task)
    assert stage.settings["function"] == "ppo_curve"  # the function is policy_curve now
