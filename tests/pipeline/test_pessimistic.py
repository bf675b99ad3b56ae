"""The pessimistic ablation's stages, without running them: a twin of the main PPO, and clear errors."""

from __future__ import annotations

import json

import pytest

from chatglm_rlhf.errors import ConfigError, UserError
from chatglm_rlhf.pipeline.context import RunContext
from chatglm_rlhf.pipeline.profiles.demo import DemoStages
from chatglm_rlhf.pipeline.run import load_pipeline_config
from chatglm_rlhf.pipeline.stages.policy import ensemble_scorer


def stages(tmp_path, *overrides: str):
    cfg = load_pipeline_config(None, ["ablations=[pessimistic]", "algorithms=[ppo]", *overrides], "default")
    return {s.name: s for s in DemoStages(RunContext(cfg, tmp_path, task=None)).build()}


def test_the_twin_differs_from_ppo_only_in_its_reward(tmp_path):
    built = stages(tmp_path, "ppo.snapshot_every=10", "ensemble.members=3", "ensemble.lam=0.25")
    names = list(built)
    # the main curve before the members (a changed lam does not redo it), the twin's curve after the twin
    order = [
        "ppo",
        "ppo_gold_curve",
        "ens_0",
        "ens_1",
        "ens_2",
        "ppo_pess",
        "ppo_pess_gold_curve",
        "evaluate",
    ]
    assert [n for n in names if n in order] == order
    main, twin = built["ppo"].settings, built["ppo_pess"].settings
    assert {k for k in twin if twin.get(k) != main.get(k)} == {"name", "ensemble", "lam", "match_scale"}
    assert twin["ensemble"] == ["ens_0", "ens_1", "ens_2"] and twin["lam"] == 0.25 and twin["match_scale"]
    assert built["ppo_pess_gold_curve"].settings["ensemble"] == twin["ensemble"]
    # each member its own resample of the main RM's filtered pairs, with the main RM's settings
    boots = [built[f"ens_{m}"].settings for m in range(3)]
    assert len({b["bootstrap"] for b in boots}) == 3
    assert all(
        b["train"] == "filter/filtered.jsonl" and b["cfg"] == built["rm"].settings["cfg"] for b in boots
    )


def test_no_curve_without_snapshots_and_one_line_errors(tmp_path):
    assert not [n for n in stages(tmp_path) if n.endswith("_gold_curve")]  # ppo.snapshot_every=0
    with pytest.raises(ConfigError, match=r"^ensemble.members: the pessimistic ablation needs >= 2"):
        stages(tmp_path, "ensemble.members=1")
    with pytest.raises(ConfigError, match="ensemble.lam"):
        load_pipeline_config(None, ["ensemble.lam=-0.5"], "default")


def test_the_reward_names_a_member_that_is_not_trained(tmp_path):
    ctx = RunContext(None, tmp_path, task=None)
    (tmp_path / "models" / "ens_0").mkdir(parents=True)
    (tmp_path / "models" / "ens_0" / "config.json").write_text(json.dumps({}))
    with pytest.raises(UserError, match=r"ensemble member\(s\) ens_1 not trained"):
        ensemble_scorer(ctx, ["ens_0", "ens_1"], 0.5)
    with pytest.raises(ConfigError, match="a scorer or an ensemble, not both"):
        ensemble_scorer(ctx, ["ens_0"], 0.5, given=object())
