"""The real-model recipes (recipes/real) load against their stage's config class, and the memory plan
quoted in each file's header describes that recipe and fits an 80 GB GPU."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatglm_rlhf.config import load_config, parse_overrides
from chatglm_rlhf.plan import PlanConfig, plan

REAL = Path(__file__).resolve().parents[2] / "recipes" / "real"
# One-stage cluster recipes (model-stage[-lora].yaml); whole-pipeline recipes such as smollm2-hh.yaml
# are tested with the real profile (tests/pipeline/test_real_config.py).
RECIPES = sorted(p for p in REAL.glob("*.yaml") if re.search(r"-(rm|ppo|dpo)(-lora)?(-vllm)?$", p.stem))


def stage_class(stage: str):
    if stage == "rm":
        from chatglm_rlhf.reward.trainer import RMConfig

        return RMConfig
    if stage == "dpo":
        from chatglm_rlhf.policy.dpo.config import DPOConfig

        return DPOConfig
    from chatglm_rlhf.policy.online.config import PPOConfig

    return PPOConfig


def test_every_model_has_rm_ppo_dpo_with_lora_variants():
    names = {p.name for p in RECIPES}
    for model in ("chatglm3-6b", "glm-4-9b-chat"):
        for stage in ("rm", "ppo", "dpo"):
            assert {f"{model}-{stage}.yaml", f"{model}-{stage}-lora.yaml"} <= names
        assert {f"{model}-ppo-vllm.yaml", f"{model}-ppo-lora-vllm.yaml"} <= names  # rollouts on vLLM


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads_and_its_plan_matches(path):
    stage = next(s for s in ("rm", "ppo", "dpo") if f"-{s}" in path.stem)
    cfg = load_config(stage_class(stage), path, section=stage)  # unknown keys / wrong types raise
    assert cfg.trust_remote_code == path.name.startswith("chatglm3")
    assert (cfg.lora_r > 0) == path.stem.removesuffix("-vllm").endswith("-lora")
    assert cfg.gradient_checkpointing
    plan_line = next(line for line in path.read_text().splitlines() if "chatglm-rlhf plan " in line)
    pc = PlanConfig(**parse_overrides(plan_line.split("chatglm-rlhf plan ", 1)[1].split()))
    assert pc.stage == stage and pc.lora_r == cfg.lora_r and pc.gradient_checkpointing
    if stage == "ppo":
        assert pc.micro_batch == cfg.micro_batch_size and pc.shared_backbone == cfg.shared_backbone
        assert (pc.prompt_len, pc.gen_len) == (cfg.max_prompt_tokens, cfg.generation.max_new_tokens)
        assert pc.gen_batch == cfg.generation.batch_size == cfg.forward_batch_size
        vllm = cfg.generation.backend == "vllm"
        assert vllm == path.stem.endswith("-vllm") == (pc.rollout_backend == "vllm")
        if vllm:
            assert pc.vllm_gpu_memory_utilization == cfg.generation.vllm.gpu_memory_utilization
    else:
        assert (pc.micro_batch, pc.seq_len) == (cfg.batch_size, cfg.max_length)
    peak = plan(pc)["strategies"][0]
    assert peak.fits, f"{path.name}: {peak.peak_gib:.1f} GiB per GPU"
    assert f"{peak.peak_gib:.1f} GiB" in path.read_text()
