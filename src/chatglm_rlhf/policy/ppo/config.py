"""PPO's settings (:class:`PPOConfig`) and the checks that name a bad key before any model loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from chatglm_rlhf.config import default_, field_
from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.policy.ppo import losses as L
from chatglm_rlhf.policy.ppo.losses import KLEstimator
from chatglm_rlhf.policy.ppo.rollout import RewardSettings
from chatglm_rlhf.utils.train_config import ReportTo, TrainerConfig


@dataclass
class PPOConfig(TrainerConfig):
    # The backend used to be a top-level key; it now lives with the other sampling settings.
    ALIASES: ClassVar[dict[str, str]] = {"generation_backend": "generation.backend"}

    model: str = default_("", help="SFT model to start from (actor and reference): local path or hub id")
    output_dir: str = default_("out/ppo")
    log_every: int = default_(1)
    # PPO has always written TensorBoard events (when tensorboard is installed) next to metrics.jsonl.
    report_to: ReportTo = default_("tensorboard")
    reward_model: str = field_("", help="reward model checkpoint (reward.scorer.RewardScorer)")
    critic_from: str = field_(
        "auto", help="critic init: auto (the reward model if given, else sft) | sft | rm | a path"
    )
    prompts: str = field_("", help="RL prompts: our samples JSONL (history + prompt)")
    sft_data: str = field_("", help="SFT data for the ptx loss (as `chatglm-rlhf sft data=`); empty = no ptx")
    steps: int = field_(100, help="PPO iterations (rollout + update)")
    snapshot_every: int = field_(
        0,
        help="a loadable copy of the policy every N steps in output_dir/snapshots/step_N (the "
        "over-optimisation curve; 0 = none)",
    )
    rollout_batch_size: int = field_(16, help="prompts sampled per iteration")
    mini_batch_size: int = field_(8, help="rollouts per optimizer update")
    micro_batch_size: int = field_(
        0, help="rows per forward/backward within a minibatch (0 = the whole minibatch)"
    )
    forward_batch_size: int = field_(
        16, help="rows per no-grad forward when computing old log-probs / values"
    )
    ppo_epochs: int = field_(2, help="passes over each rollout batch")
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    max_prompt_tokens: int = field_(384, help="history is trimmed (oldest turns first) to fit")
    critic_lr: float = field_(5e-5, help="critic and value-head learning rate")
    gamma: float = field_(1.0, help="GAE discount")
    lam: float = field_(0.95, help="GAE lambda")
    clip_range: float = field_(0.2, help="policy ratio clip")
    clip_range_value: float = field_(0.2, help="value clip around the old values (0 = off)")
    vf_coef: float = field_(0.5, help="value-loss weight in the fused loss")
    entropy_coef: float = field_(0.0, help="entropy bonus weight")
    whiten_advantages: bool = field_(True, help="normalise advantages per rollout batch")
    kl_coef: float = field_(
        0.05, help="beta: per-token KL penalty to the reference (initial value if adaptive)"
    )
    kl_estimator: KLEstimator = field_(
        "k1", help="k1: log p - log q | k3: (q/p - 1) - log(q/p), never negative"
    )
    adaptive_kl: bool = field_(False, help="adapt beta so the KL tracks kl_target (Ziegler et al.)")
    kl_target: float = field_(6.0, help="adaptive KL: target KL per response")
    kl_horizon: int = field_(10000, help="adaptive KL: horizon in samples")
    reward_baseline: bool = field_(
        True, help="paper: reward r(x,y) - r(x,y_ref), y_ref the SFT model's cached answer"
    )
    baseline_k: int = field_(
        1, help="answers averaged into the baseline (1 = the paper's single y_ref; > 1 samples them)"
    )
    baseline_greedy: bool = field_(
        True, help="y_ref by greedy decoding (else sampled with the generation settings)"
    )
    reward_clip: float = field_(0.0, help="clamp the sequence reward to [-c, c] (0 = off)")
    reward_normalize: bool = field_(
        False, help="running mean/std normalisation of the reward (no-baseline ablation)"
    )
    truncation_penalty: float = field_(
        0.0, help="subtracted from the score of a response cut at max_new_tokens"
    )
    prompt_filter: bool = field_(
        True, help="paper: drop prompts whose k responses have reward variance < filter_eps"
    )
    filter_k: int = field_(4, help="prompt filter: responses sampled per prompt")
    filter_eps: float = field_(1e-3, help="prompt filter: minimum reward variance to keep a prompt")
    ptx_coef: float = field_(
        0.1, help="weight of the SFT loss on sft_data mixed into the actor loss (0 = off)"
    )
    ptx_batch_size: int = field_(8, help="SFT sequences per optimizer update for the ptx loss")
    max_length: int = field_(512, help="ptx: max tokens of an SFT sequence")
    shared_backbone: bool = field_(
        False, help="actor and critic share one backbone with two heads (saves memory)"
    )
    fsdp: bool = field_(
        False,
        help="shard actor, critic and reference over the processes with FSDP2 (fully_shard per block; "
        "CPU/gloo too); generation gathers the actor's full weights (docs/scaling.md)",
    )


def validate(cfg: PPOConfig) -> None:
    """Raise ConfigError naming the key for values that cannot work."""
    positive = (
        "baseline_k",
        "steps",
        "rollout_batch_size",
        "mini_batch_size",
        "forward_batch_size",
        "ppo_epochs",
        "filter_k",
    )
    for key in positive:
        if getattr(cfg, key) < 1:
            raise ConfigError(f"ppo: {key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.mini_batch_size > cfg.rollout_batch_size:
        raise ConfigError(
            f"ppo: mini_batch_size ({cfg.mini_batch_size}) must be <= rollout_batch_size ({cfg.rollout_batch_size})"
        )
    if cfg.kl_estimator not in L.KL_ESTIMATORS:
        raise ConfigError(
            f"ppo: kl_estimator must be one of {list(L.KL_ESTIMATORS)}, got {cfg.kl_estimator!r}"
        )
    if not cfg.generation.greedy and cfg.generation.temperature <= 0:
        raise ConfigError(
            f"ppo: generation.temperature must be > 0 when sampling, got {cfg.generation.temperature}"
        )
    if cfg.ptx_coef < 0 or cfg.kl_coef < 0:
        raise ConfigError("ppo: ptx_coef and kl_coef must be >= 0")


def reward_settings(cfg: PPOConfig) -> RewardSettings:
    return RewardSettings(
        baseline=cfg.reward_baseline,
        truncation_penalty=cfg.truncation_penalty,
        reward_clip=cfg.reward_clip,
        normalize=cfg.reward_normalize,
        kl_estimator=cfg.kl_estimator,
        gamma=cfg.gamma,
        lam=cfg.lam,
        whiten_advantages=cfg.whiten_advantages,
        temperature=sampling_temperature(cfg.generation),
    )


def sampling_temperature(g: GenerationSettings) -> float:
    """The temperature the rollouts are drawn at (1 for greedy decoding, which has none)."""
    return 1.0 if g.greedy else g.temperature
