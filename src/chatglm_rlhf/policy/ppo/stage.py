"""Entry points for PPO: ``run_ppo`` (the CLI: everything from paths) and ``run_ppo_stage`` (the demo
pipeline: in-memory prompts, SFT examples and any scorer)."""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.policy.ppo.config import PPOConfig, validate
from chatglm_rlhf.policy.ppo.trainer import PPOTrainer
from chatglm_rlhf.reward.protocol import Scorer


def _device(cfg: PPOConfig) -> str:
    """This process's device, the one the trainer's accelerator will use (``cuda:<local rank>`` with
    several GPUs): models load straight there instead of all landing on GPU 0 first."""
    from accelerate import PartialState

    return str(PartialState(cpu=cfg.cpu).device)


def _load_models(cfg: PPOConfig, device: str):
    from chatglm_rlhf.policy.ppo.models import load_ppo_models
    from chatglm_rlhf.utils.training import set_seed

    # LoRA factors are initialised from the global RNG, which imports leave randomly seeded: seed it so
    # that a run is reproducible and every rank starts from the same adapters.
    set_seed(cfg.seed)
    return load_ppo_models(cfg, device)


def heldout_sft_loss(
    model, tokenizer, examples: list[tuple[DialogueSample, str]], max_length: int, batch_size: int = 16
) -> float:
    """Mean per-token SFT loss of ``model`` on held-out (sample, response) pairs: the capability probe."""
    from chatglm_rlhf.policy.sft import encode_examples, evaluate_loss, make_batches

    enc = encode_examples(tokenizer, examples, max_length, truncate_response=True)
    device = next(model.parameters()).device
    was_training = model.training
    loss = evaluate_loss(model, make_batches(enc, batch_size, tokenizer.pad_token_id), device)
    model.train(was_training)
    return loss


def reference_heldout_loss(models, examples: list[tuple[DialogueSample, str]], max_length: int) -> float:
    """:func:`heldout_sft_loss` of the frozen SFT policy (the LoRA actor with its adapters off)."""
    with models.reference_lm() as ref:
        return heldout_sft_loss(ref, models.tokenizer, examples, max_length)


def cli_inputs(cfg, name: str) -> tuple[list[DialogueSample], list, Any, str]:
    """What a command on PPO's loop (``ppo``, ``pg``) reads from its config: (prompts, SFT examples,
    the reward model as a scorer, the device); a missing required key is an error naming it."""
    from chatglm_rlhf.data.io import read_samples
    from chatglm_rlhf.policy.sft import load_sft_examples
    from chatglm_rlhf.reward.scorer import RewardScorer

    missing = [k for k in ("model", "reward_model", "prompts") if not getattr(cfg, k)]
    if missing:
        raise UserError(f"{name}: {', '.join(k + '=...' for k in missing)} required")
    prompts, report = read_samples(cfg.prompts, strict=cfg.strict)
    report.print()
    sft_examples = load_sft_examples(cfg.sft_data, cfg.strict) if cfg.sft_data else []
    device = _device(cfg)
    scorer = RewardScorer.from_pretrained(
        cfg.reward_model, device=device, trust_remote_code=cfg.trust_remote_code, key="reward_model"
    )
    return prompts, sft_examples, scorer, device


def run_ppo(cfg: PPOConfig) -> dict[str, Any]:
    """``chatglm-rlhf ppo``: load the SFT model, the reward model, prompts and SFT data; train; save."""
    validate(cfg)
    prompts, sft_examples, scorer, device = cli_inputs(cfg, "ppo")
    return PPOTrainer(cfg, _load_models(cfg, device), scorer, prompts, sft_examples).train()


def run_ppo_stage(
    sft_model_dir: str,
    out_dir: str,
    prompts: list[DialogueSample],
    sft_examples: list[tuple[DialogueSample, str]],
    scorer: Scorer,
    cfg: PPOConfig,
    heldout_examples: list[tuple[DialogueSample, str]] | None = None,
) -> dict[str, Any]:
    """The demo pipeline's PPO stage: train from ``sft_model_dir`` into ``out_dir`` and report metrics.

    ``cfg.model`` / ``cfg.output_dir`` are replaced by the arguments; ``sft_examples`` feed the ptx
    loss (ignored when ``cfg.ptx_coef == 0``). With ``heldout_examples`` the held-out SFT loss of the
    SFT model and of the trained policy are measured (``sft_heldout_loss_before`` / ``..._after``).
    Returns the trainer's summary: ``reward_series`` (raw RM score per step), ``reward_train_series``
    (what PPO optimised: baseline-subtracted when the baseline is on), their ``*_std`` across steps,
    ``reward_train_within_step_std``, ``kl_series`` / ``kl_final``, ``prompt_filter`` counts,
    throughput means, ``steps`` and ``seconds``.
    """
    return train_from_sft(PPOTrainer, _load_models, sft_model_dir, out_dir, prompts, sft_examples, scorer, cfg,
                          heldout_examples)  # fmt: skip


def train_from_sft(trainer_class, load_models, sft_model_dir: str, out_dir: str, prompts, sft_examples,
                   scorer: Scorer, cfg, heldout_examples=None) -> dict[str, Any]:  # fmt: skip
    """A pipeline stage of a trainer on PPO's loop (PPO, the critic-free one): ``cfg`` with the SFT model
    and the output folder set, models from ``load_models(cfg, device)``, the trainer's summary plus the
    held-out SFT loss of the SFT policy and of the trained one (with ``heldout_examples``) and the wall time."""
    cfg = replace(copy.deepcopy(cfg), model=str(sft_model_dir), output_dir=str(out_dir))
    t0 = time.time()
    models = load_models(cfg, _device(cfg))
    before = reference_heldout_loss(models, heldout_examples, cfg.max_length) if heldout_examples else None
    result = trainer_class(cfg, models, scorer, prompts, sft_examples).train()
    if heldout_examples:
        result["sft_heldout_loss_before"] = before
        result["sft_heldout_loss"] = heldout_sft_loss(
            models.actor, models.tokenizer, heldout_examples, cfg.max_length
        )
    result["wall_seconds"] = time.time() - t0
    return result


def train(inputs, cfg: PPOConfig) -> dict[str, Any]:
    """The registry's entry point (:mod:`chatglm_rlhf.policy.registry`): PPO as a pipeline stage."""
    cfg = replace(cfg, reward_model=inputs.reward_model or cfg.reward_model, progress=inputs.progress)
    result = run_ppo_stage(
        inputs.sft_path, inputs.output_dir, inputs.prompts, inputs.sft_examples, inputs.scorer, cfg,
        heldout_examples=inputs.heldout_examples or None,
    )  # fmt: skip
    result["lora_r"] = cfg.lora_r
    return result
