"""Entry points of the critic-free trainer: ``run_pg`` (the CLI: everything from paths) and ``train``
(the registry's: a pipeline stage with in-memory prompts, SFT examples and any scorer)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.policy.pg.config import PGConfig, validate
from chatglm_rlhf.policy.ppo.stage import cli_inputs, train_from_sft
from chatglm_rlhf.reward.protocol import Scorer


def load_pg_models(cfg: PGConfig, device: str):
    """The actor and the frozen reference (no critic), seeded so LoRA factors are reproducible."""
    from chatglm_rlhf.policy.ppo.models import load_actor_and_reference
    from chatglm_rlhf.utils.training import set_seed

    set_seed(cfg.seed)
    return load_actor_and_reference(cfg, device)


def run_pg(cfg: PGConfig) -> dict[str, Any]:
    """``chatglm-rlhf pg``: load the SFT model, the reward model, prompts and SFT data; train; save."""
    from chatglm_rlhf.policy.pg.trainer import PGTrainer

    validate(cfg)
    prompts, sft_examples, scorer, device = cli_inputs(cfg, "pg")
    return PGTrainer(cfg, load_pg_models(cfg, device), scorer, prompts, sft_examples).train()


def run_pg_stage(
    sft_model_dir: str,
    out_dir: str,
    prompts: list[DialogueSample],
    sft_examples: list[tuple[DialogueSample, str]],
    scorer: Scorer,
    cfg: PGConfig,
    heldout_examples: list[tuple[DialogueSample, str]] | None = None,
) -> dict[str, Any]:
    """Train from ``sft_model_dir`` into ``out_dir``; the summary has PPO's keys (``reward_series``,
    ``kl_final``, ``prompt_filter``, the held-out SFT loss before / after, ...) plus ``estimator``."""
    from chatglm_rlhf.policy.pg.trainer import PGTrainer

    result = train_from_sft(PGTrainer, load_pg_models, sft_model_dir, out_dir, prompts, sft_examples, scorer, cfg,
                            heldout_examples)  # fmt: skip
    return {**result, "estimator": cfg.estimator}


def train(inputs, cfg: PGConfig) -> dict[str, Any]:
    """The registry's entry point (:mod:`chatglm_rlhf.policy.registry`): critic-free PG as a stage."""
    cfg = replace(cfg, reward_model=inputs.reward_model or cfg.reward_model, progress=inputs.progress)
    result = run_pg_stage(
        inputs.sft_path, inputs.output_dir, inputs.prompts, inputs.sft_examples, inputs.scorer, cfg,
        heldout_examples=inputs.heldout_examples or None,
    )  # fmt: skip
    result["lora_r"] = cfg.lora_r
    return result
