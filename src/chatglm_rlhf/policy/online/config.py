"""The settings of every online RL algorithm, written once (:class:`OnlineConfig`), and the checks that
name a bad key before any model loads.

``ppo`` and ``pg`` are two sections of the same class with other defaults: PPO's section trains with
the ``gae`` estimator (a critic), the critic-free section with a group estimator and k samples per
prompt. Any estimator registered in :mod:`chatglm_rlhf.policy.online.estimators` runs in either.
Torch-free, so the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from chatglm_rlhf.config import default_, field_
from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.utils.train_config import ReportTo, TrainerConfig

KLMode = Literal["auto", "reward", "loss"]
LossAgg = Literal["auto", "token_mean", "seq_mean", "seq_sum"]
KLEstimator = Literal["k1", "k3"]
CRITIC_FIELDS = ("critic_from", "critic_lr", "gamma", "lam", "clip_range_value", "vf_coef", "shared_backbone")
ESTIMATOR_HELP = (
    "advantage estimator (policy/online/estimators.py): gae (a critic: PPO) | grpo (group mean/std) | "
    "dr_grpo (group mean, no std, no length norm) | rloo (leave-one-out) | reinforce_pp (batch-normalised) "
    "| ref_baseline (r - r(SFT answer)) | remax (r - r(greedy answer of the current policy))"
)


@dataclass
class OnlineConfig(TrainerConfig):
    """Sample k responses to each prompt, score them, compute advantages, clipped-ratio updates."""

    NAME: ClassVar[str] = "online"  # the section: names files (NAME_result.json) and messages
    # Old keys, rewritten to the new ones (with a notice) before unknown keys are checked.
    ALIASES: ClassVar[dict[str, str]] = {
        "generation_backend": "generation.backend",
        "ppo_epochs": "update_epochs",
        "epochs": "update_epochs",
    }
    # The keys a pipeline fills in (the SFT model, the run's folders and data, its reward model).
    PIPELINE_FILLED: ClassVar[tuple[str, ...]] = (
        "model",
        "output_dir",
        "prompts",
        "sft_data",
        "reward_model",
    )
    # Fingerprints (pipeline/fingerprint.py) of runs made before the two trainers shared this class:
    # the section's old name of a field, and the fields it did not have, left out at the value that
    # reproduces what it did then; so finished runs are not redone.
    FINGERPRINT_NAMES: ClassVar[dict[str, str]] = {}
    SINCE: ClassVar[dict[str, Any]] = {}

    model: str = default_("", help="SFT model to start from (actor and reference): local path or hub id")
    reference_model: str = field_(
        "", added=True,
        help="the frozen reference (KL, reference baseline) when it is not `model`: feedback rounds start "
        "`model` from the previous round's policy and keep the SFT model here (empty = model)",
    )  # fmt: skip
    output_dir: str = default_("out/ppo")
    log_every: int = default_(1)
    report_to: ReportTo = default_("tensorboard")  # curves next to metrics.jsonl
    estimator: str = field_("gae", help=ESTIMATOR_HELP)
    reward_model: str = field_("", help="reward model checkpoint (reward.scorer.RewardScorer)")
    prompts: str = field_("", help="RL prompts: our samples JSONL (history + prompt)")
    sft_data: str = field_("", help="SFT data for the ptx loss (as `chatglm-rlhf sft data=`); empty = no ptx")
    steps: int = field_(100, help="iterations (sample, score, update)")
    snapshot_every: int = field_(
        0,
        help="a loadable copy of the policy every N steps in output_dir/snapshots/step_N (the "
        "over-optimisation curve; 0 = none)",
    )
    rollout_batch_size: int = field_(16, help="prompts sampled per iteration (each k times)")
    k: int = field_(1, help="responses sampled per prompt (the group; >= 2 for grpo, dr_grpo, rloo)")
    mini_batch_size: int = field_(8, help="responses per optimizer update")
    micro_batch_size: int = field_(0, help="rows per forward/backward within a minibatch (0 = all)")
    forward_batch_size: int = field_(16, help="rows per no-grad forward for the old / reference log-probs")
    update_epochs: int = field_(2, help="passes over each iteration's responses (old: ppo_epochs, epochs)")
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    max_prompt_tokens: int = field_(384, help="history is trimmed (oldest turns first) to fit")
    clip_range: float = field_(0.2, help="policy ratio clip")
    entropy_coef: float = field_(0.0, help="entropy bonus weight")
    loss_agg: LossAgg = field_(
        "auto",
        help="token_mean (every token weighs the same; PPO's) | seq_mean (GRPO's per-response mean) | "
        "seq_sum (token sum / max_new_tokens: Dr. GRPO) | auto: the estimator's (seq_sum for dr_grpo)",
    )
    kl_coef: float = field_(0.05, help="beta: weight of the KL to the reference (initial value if adaptive)")
    kl_estimator: KLEstimator = field_(
        "k1", help="k1: log p - log q | k3: (q/p - 1) - log(q/p), never negative"
    )
    kl_mode: KLMode = field_(
        "auto",
        help="reward: per-token KL penalty in the reward (PPO) | loss: a k3 KL loss term (GRPO) | "
        "auto: the estimator's (loss for grpo and dr_grpo, reward for the others)",
    )
    adaptive_kl: bool = field_(False, help="adapt beta so the KL tracks kl_target (Ziegler et al.)")
    kl_target: float = field_(6.0, help="adaptive KL: target KL per response")
    kl_horizon: int = field_(10000, help="adaptive KL: horizon in samples")
    whiten_advantages: bool = field_(True, help="normalise advantages over each rollout batch")
    reward_baseline: bool = field_(
        True,
        help="paper: reward r(x,y) - r(x,y_ref), y_ref the SFT model's cached answer (always on for "
        "estimator=ref_baseline)",
    )
    baseline_k: int = field_(
        1, help="answers averaged into the baseline (1 = the paper's single y_ref; > 1 samples them)"
    )
    baseline_greedy: bool = field_(
        True, help="y_ref by greedy decoding (else sampled with the generation settings)"
    )
    baseline_from_filter: bool = field_(
        False, added=True,
        help="the reference baseline is the mean reward of the prompt filter's filter_k sampled SFT answers "
        "(no second generation pass over the prompts; needs prompt_filter and the SFT model as `model`)",
    )  # fmt: skip
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
    critic_from: str = field_(
        "auto", help="critic init: auto (the reward model if given, else sft) | sft | rm | a path"
    )
    critic_lr: float = field_(5e-5, help="critic and value-head learning rate")
    gamma: float = field_(1.0, help="GAE discount")
    lam: float = field_(0.95, help="GAE lambda")
    clip_range_value: float = field_(0.2, help="value clip around the old values (0 = off)")
    vf_coef: float = field_(0.5, help="value-loss weight in the fused loss")
    shared_backbone: bool = field_(
        False, help="actor and critic share one backbone with two heads (saves memory)"
    )
    fsdp: bool = field_(
        False,
        help="shard actor, critic and reference over the processes with FSDP2 (fully_shard per block; "
        "CPU/gloo too); generation gathers the actor's full weights (docs/scaling.md)",
    )

    def needs_critic(self) -> bool:
        from chatglm_rlhf.policy.online.estimators import get_estimator

        return get_estimator(self.estimator, f"{self.NAME}.estimator").critic

    def unused_fields(self) -> tuple[str, ...]:
        """Fields that change nothing at their values (left out of fingerprints): the critic's without
        one, and those this section did not have before (:attr:`SINCE`) at their old behaviour."""
        from chatglm_rlhf.policy.online.estimators import ADV_ESTIMATORS

        spec = ADV_ESTIMATORS.get(self.estimator)
        out = [f for f in CRITIC_FIELDS if spec is not None and not spec.critic]
        out += [f for f, v in self.SINCE.items() if getattr(self, f) == v and f not in out]
        return tuple(out)


@dataclass
class PPOConfig(OnlineConfig):
    """The online section PPO runs in: the gae estimator with its critic, one response per prompt."""

    NAME: ClassVar[str] = "ppo"
    FINGERPRINT_NAMES: ClassVar[dict[str, str]] = {"update_epochs": "ppo_epochs"}
    SINCE: ClassVar[dict[str, Any]] = {"estimator": "gae", "k": 1, "kl_mode": "auto", "loss_agg": "auto"}


_PG_SINCE: dict[str, Any] = {
    "snapshot_every": 0, "fsdp": False, "whiten_advantages": False, "reward_baseline": False,
    "adaptive_kl": False, "kl_target": 6.0, "kl_horizon": 10000, "reward_clip": 0.0, "reward_normalize": False,
    "entropy_coef": 0.0,
}  # fmt: skip


@dataclass
class PGConfig(OnlineConfig):
    """The critic-free section: k samples per prompt and a group estimator (any estimator runs)."""

    NAME: ClassVar[str] = "pg"
    FINGERPRINT_NAMES: ClassVar[dict[str, str]] = {"update_epochs": "epochs"}
    SINCE: ClassVar[dict[str, Any]] = _PG_SINCE

    output_dir: str = default_("out/pg")
    estimator: str = default_("grpo")
    rollout_batch_size: int = default_(8)
    k: int = default_(4)
    mini_batch_size: int = default_(16)
    update_epochs: int = default_(1)
    whiten_advantages: bool = default_(False)
    reward_baseline: bool = default_(False)


def validate(cfg: OnlineConfig) -> None:
    """Raise ConfigError naming the key for values that cannot work."""
    from chatglm_rlhf.policy.online.estimators import get_estimator

    name = cfg.NAME
    spec = get_estimator(cfg.estimator, f"{name}: estimator")
    positive = ("steps", "rollout_batch_size", "k", "mini_batch_size", "forward_batch_size", "update_epochs",
                "filter_k", "baseline_k")  # fmt: skip
    for key in positive:
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{name}: {key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.k < spec.min_k:
        raise ConfigError(
            f"{name}: k must be >= {spec.min_k} for estimator={cfg.estimator} (a group baseline), got {cfg.k}"
        )
    if cfg.mini_batch_size > cfg.rollout_batch_size * cfg.k:
        raise ConfigError(
            f"{name}: mini_batch_size ({cfg.mini_batch_size}) must be <= rollout_batch_size * k "
            f"({cfg.rollout_batch_size * cfg.k})"
        )
    if cfg.kl_estimator not in ("k1", "k3"):  # load_config checks the Literal; this catches code
        raise ConfigError(f"{name}: kl_estimator must be one of ['k1', 'k3'], got {cfg.kl_estimator!r}")
    if not cfg.generation.greedy and cfg.generation.temperature <= 0:
        raise ConfigError(
            f"{name}: generation.temperature must be > 0 when sampling, got {cfg.generation.temperature}"
        )
    for key in ("ptx_coef", "kl_coef", "entropy_coef", "reward_clip", "truncation_penalty"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{name}: {key} must be >= 0, got {getattr(cfg, key)}")
    if cfg.baseline_from_filter and not cfg.prompt_filter:
        raise ConfigError(
            f"{name}: baseline_from_filter needs prompt_filter=true (its answers are the baseline)"
        )
    if cfg.baseline_from_filter and cfg.reference_model:
        # The filter samples the policy being trained; only when that starts as the reference are its
        # answers the reference's.
        raise ConfigError(f"{name}: baseline_from_filter needs the policy to start as the reference "
                          f"(reference_model is {cfg.reference_model!r})")  # fmt: skip
    if cfg.lr <= 0 or (spec.critic and cfg.critic_lr <= 0):
        raise ConfigError(f"{name}: lr and critic_lr must be > 0, got {cfg.lr} and {cfg.critic_lr}")


def resolved(cfg: OnlineConfig) -> tuple[str, str]:
    """(kl_mode, loss_agg) with ``auto`` resolved by the estimator's registration."""
    from chatglm_rlhf.policy.online.estimators import get_estimator

    spec = get_estimator(cfg.estimator, f"{cfg.NAME}: estimator")
    kl_mode = spec.kl_mode if cfg.kl_mode == "auto" else cfg.kl_mode
    return kl_mode, spec.loss_agg if cfg.loss_agg == "auto" else cfg.loss_agg


def sampling_temperature(g: GenerationSettings) -> float:
    """The temperature the rollouts are drawn at (1 for greedy decoding, which has none)."""
    return 1.0 if g.greedy else g.temperature
