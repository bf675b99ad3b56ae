"""Settings of the critic-free trainer (:class:`PGConfig`) and the checks that name a bad key early."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from chatglm_rlhf.config import default_, field_
from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.policy.pg.losses import ESTIMATORS, GROUP_ESTIMATORS, Estimator
from chatglm_rlhf.policy.ppo.losses import KLEstimator
from chatglm_rlhf.utils.train_config import ReportTo, TrainerConfig

KLMode = Literal["auto", "reward", "loss"]
LossAggChoice = Literal["auto", "token_mean", "seq_mean", "seq_sum"]


@dataclass
class PGConfig(TrainerConfig):
    model: str = default_("", help="SFT model to start from (actor and reference): local path or hub id")
    output_dir: str = default_("out/pg")
    log_every: int = default_(1)
    report_to: ReportTo = default_("tensorboard")  # as PPO: curves next to metrics.jsonl
    estimator: Estimator = field_(
        "grpo",
        help="advantage estimator: grpo (group mean/std) | dr_grpo (group mean, no std, no length norm) | "
        "rloo (leave-one-out) | reinforce_pp (batch-normalised) | ref_baseline (r - r(SFT answer))",
    )
    reward_model: str = field_("", help="reward model checkpoint (reward.scorer.RewardScorer)")
    prompts: str = field_("", help="RL prompts: our samples JSONL (history + prompt)")
    sft_data: str = field_("", help="SFT data for the ptx loss (as `chatglm-rlhf sft data=`); empty = no ptx")
    steps: int = field_(100, help="iterations (sample k per prompt, score, update)")
    rollout_batch_size: int = field_(8, help="prompts per iteration (each sampled k times)")
    k: int = field_(4, help="responses sampled per prompt (the group; >= 2 for grpo, dr_grpo, rloo)")
    mini_batch_size: int = field_(16, help="responses per optimizer update")
    micro_batch_size: int = field_(0, help="rows per forward/backward within a minibatch (0 = all)")
    forward_batch_size: int = field_(16, help="rows per no-grad forward for the old / reference log-probs")
    epochs: int = field_(1, help="passes over each iteration's responses (>1 makes the clip matter more)")
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    max_prompt_tokens: int = field_(384, help="history is trimmed (oldest turns first) to fit")
    clip_range: float = field_(0.2, help="policy ratio clip")
    kl_coef: float = field_(0.05, help="beta: weight of the KL to the reference (in the reward or the loss)")
    kl_mode: KLMode = field_(
        "auto",
        help="reward: per-token KL penalty in the reward (as PPO) | loss: a k3 KL loss term (GRPO) | "
        "auto: loss for grpo and dr_grpo, reward for the others (as their papers do)",
    )
    kl_estimator: KLEstimator = field_("k1", help="kl_mode=reward: k1 (log p - log q) or k3 per token")
    loss_agg: LossAggChoice = field_(
        "auto",
        help="token_mean (every token weighs the same; PPO's) | seq_mean (GRPO's per-response mean) | "
        "seq_sum (token sum / max_new_tokens: Dr. GRPO) | auto: seq_sum for dr_grpo, else token_mean",
    )
    baseline_k: int = field_(1, help="ref_baseline: answers averaged into r(x, y_ref) (1 = the paper's)")
    baseline_greedy: bool = field_(True, help="ref_baseline: y_ref by greedy decoding")
    truncation_penalty: float = field_(
        0.0, help="subtracted from the score of a response cut at max_new_tokens"
    )
    prompt_filter: bool = field_(
        True, help="paper: drop prompts whose k responses have reward variance < filter_eps"
    )
    filter_k: int = field_(4, help="prompt filter: responses sampled per prompt")
    filter_eps: float = field_(1e-3, help="prompt filter: minimum reward variance to keep a prompt")
    ptx_coef: float = field_(0.1, help="weight of the SFT loss on sft_data (0 = off)")
    ptx_batch_size: int = field_(8, help="SFT sequences per optimizer update for the ptx loss")
    max_length: int = field_(512, help="ptx: max tokens of an SFT sequence")

    # Read by the prompt preparation shared with PPO (filter + baseline cache): the reference answers
    # are generated only when the estimator uses them.
    @property
    def reward_baseline(self) -> bool:
        return self.estimator == "ref_baseline"

    def resolved_kl_mode(self) -> str:
        if self.kl_mode != "auto":
            return self.kl_mode
        return "loss" if self.estimator in ("grpo", "dr_grpo") else "reward"

    def resolved_loss_agg(self) -> str:
        if self.loss_agg != "auto":
            return self.loss_agg
        return "seq_sum" if self.estimator == "dr_grpo" else "token_mean"


def validate(cfg: PGConfig) -> None:
    """Raise ConfigError naming the key for values that cannot work."""
    for key in ("steps", "rollout_batch_size", "k", "mini_batch_size", "forward_batch_size", "epochs",
                "filter_k", "baseline_k"):  # fmt: skip
        if getattr(cfg, key) < 1:
            raise ConfigError(f"pg: {key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.estimator not in ESTIMATORS:  # load_config checks the Literal; this catches PGConfig(...) in code
        raise ConfigError(f"pg: estimator must be one of {list(ESTIMATORS)}, got {cfg.estimator!r}")
    if cfg.estimator in GROUP_ESTIMATORS and cfg.k < 2:
        raise ConfigError(f"pg: k must be >= 2 for estimator={cfg.estimator} (a group baseline), got {cfg.k}")
    if cfg.mini_batch_size > cfg.rollout_batch_size * cfg.k:
        raise ConfigError(
            f"pg: mini_batch_size ({cfg.mini_batch_size}) must be <= rollout_batch_size * k "
            f"({cfg.rollout_batch_size * cfg.k})"
        )
    if not cfg.generation.greedy and cfg.generation.temperature <= 0:
        raise ConfigError(
            f"pg: generation.temperature must be > 0 when sampling, got {cfg.generation.temperature}"
        )
    if cfg.ptx_coef < 0 or cfg.kl_coef < 0:
        raise ConfigError("pg: ptx_coef and kl_coef must be >= 0")
