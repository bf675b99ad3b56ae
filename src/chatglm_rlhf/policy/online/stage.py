"""Entry points of the online loop: ``run`` (the ``ppo`` / ``pg`` commands: everything from paths) and
``train`` (the registry's: a pipeline stage with in-memory prompts, SFT examples and any scorer)."""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.policy.online.config import OnlineConfig, validate
from chatglm_rlhf.reward.protocol import Scorer


def device_of(cfg: OnlineConfig) -> str:
    """This process's device, the one the trainer's accelerator will use (``cuda:<local rank>`` with
    several GPUs): models load straight there instead of all landing on GPU 0 first."""
    from accelerate import PartialState

    return str(PartialState(cpu=cfg.cpu).device)


def load_models(cfg: OnlineConfig, device: str):
    """The actor and the frozen reference, plus a critic when the estimator trains one."""
    from chatglm_rlhf.policy.models import load_actor_and_reference
    from chatglm_rlhf.policy.online.critic import load_actor_critic
    from chatglm_rlhf.utils.training import set_seed

    # LoRA factors are initialised from the global RNG, which imports leave randomly seeded: seed it so
    # that a run is reproducible and every rank starts from the same adapters.
    set_seed(cfg.seed)
    return load_actor_critic(cfg, device) if cfg.needs_critic() else load_actor_and_reference(cfg, device)


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


def cli_inputs(cfg: OnlineConfig) -> tuple[list[DialogueSample], list, Any, str]:
    """What a command reads from its config: (prompts, SFT examples, the reward model as a scorer, the
    device); a missing required key is an error naming it."""
    from chatglm_rlhf.data.io import read_samples
    from chatglm_rlhf.policy.sft import load_sft_examples
    from chatglm_rlhf.reward.scorer import RewardScorer

    missing = [k for k in ("model", "reward_model", "prompts") if not getattr(cfg, k)]
    if missing:
        raise UserError(f"{cfg.NAME}: {', '.join(k + '=...' for k in missing)} required")
    prompts, report = read_samples(cfg.prompts, strict=cfg.strict)
    report.print()
    sft_examples = load_sft_examples(cfg.sft_data, cfg.strict) if cfg.sft_data else []
    device = device_of(cfg)
    scorer = RewardScorer.from_pretrained(
        cfg.reward_model, device=device, trust_remote_code=cfg.trust_remote_code, key="reward_model"
    )
    return prompts, sft_examples, scorer, device


def run(cfg: OnlineConfig) -> dict[str, Any]:
    """``chatglm-rlhf ppo`` / ``pg``: load the SFT model, the reward model, prompts and SFT data; train; save."""
    from chatglm_rlhf.policy.online.loop import OnlineTrainer

    validate(cfg)
    prompts, sft_examples, scorer, device = cli_inputs(cfg)
    return OnlineTrainer(cfg, load_models(cfg, device), scorer, prompts, sft_examples).train()


def train_from_sft(sft_model_dir: str, out_dir: str, prompts: list[DialogueSample],
                   sft_examples: list[tuple[DialogueSample, str]], scorer: Scorer, cfg: OnlineConfig,
                   heldout_examples: list[tuple[DialogueSample, str]] | None = None) -> dict[str, Any]:  # fmt: skip
    """Train from ``sft_model_dir`` into ``out_dir`` (``cfg.model`` / ``cfg.output_dir`` replaced) and
    report: the trainer's summary (``reward_series``: raw RM score per step; ``reward_train_series``:
    what the estimator saw; their ``*_std`` across steps; ``reward_train_within_step_std``;
    ``kl_series`` / ``kl_final``; ``prompt_filter`` counts; throughput; ``steps``; ``seconds``;
    ``estimator``), the held-out SFT loss of the SFT policy and of the trained one (with
    ``heldout_examples``: ``sft_heldout_loss_before`` / ``sft_heldout_loss``) and the wall time."""
    from chatglm_rlhf.policy.online.loop import OnlineTrainer

    cfg = replace(copy.deepcopy(cfg), model=str(sft_model_dir), output_dir=str(out_dir))
    t0 = time.time()
    models = load_models(cfg, device_of(cfg))
    before = reference_heldout_loss(models, heldout_examples, cfg.max_length) if heldout_examples else None
    result = OnlineTrainer(cfg, models, scorer, prompts, sft_examples).train()
    if heldout_examples:
        result["sft_heldout_loss_before"] = before
        result["sft_heldout_loss"] = heldout_sft_loss(
            models.actor, models.tokenizer, heldout_examples, cfg.max_length
        )
    result["wall_seconds"] = time.time() - t0
    return result


def train(inputs, cfg: OnlineConfig) -> dict[str, Any]:
    """The registry's entry point (:mod:`chatglm_rlhf.policy.registry`): any online section as a stage."""
    cfg = replace(cfg, reward_model=inputs.reward_model or cfg.reward_model, progress=inputs.progress)
    result = train_from_sft(inputs.sft_path, inputs.output_dir, inputs.prompts, inputs.sft_examples, inputs.scorer,
                            cfg, heldout_examples=inputs.heldout_examples or None)  # fmt: skip
    result["lora_r"] = cfg.lora_r
    return result
