"""DPO's settings (:class:`DPOConfig`), checked when built so a bad key fails before any model loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from chatglm_rlhf.config import default_, field_
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.utils.train_config import EpochTrainerConfig, LRSchedule


@dataclass
class DPOConfig(EpochTrainerConfig):
    # The keys a pipeline fills in (the SFT model, the run's folder, its prompts and reward model).
    PIPELINE_FILLED: ClassVar[tuple[str, ...]] = ("model", "output_dir", "prompts", "reward_model")

    model: str = default_("", help="policy to start from (usually the SFT model): local path or hub id")
    output_dir: str = default_("out/dpo", help="where the trained model, pairs, caches and checkpoints go")
    lr: float = default_(1e-6)
    warmup_ratio: float = default_(0.1)
    lr_schedule: LRSchedule = default_("linear")
    pairs_from: Literal["data", "rm"] = field_(
        "data", help="data: pairs from the `data` file | rm: sample + score the policy"
    )
    data: str = field_("", help="preference file (ours, TRL or HH-RLHF format) for pairs_from=data")
    eval_data: str | None = field_(None, help="optional held-out preference file for eval accuracy/margin")
    prompts: str = field_("", help="prompts (our samples JSONL) for pairs_from=rm")
    reward_model: str = field_("", help="reward model directory that labels the samples (pairs_from=rm)")
    k: int = field_(4, help="responses sampled per prompt (pairs_from=rm); best vs worst become a pair")
    min_spread: float = field_(0.0, help="skip prompts whose best-worst score spread is below this")
    generation: GenerationSettings = field_(GenerationSettings(), help="sampling settings (pairs_from=rm)")
    beta: float = field_(0.1, help="DPO beta (IPO: tau); larger = stay closer to the reference")
    loss_type: Literal["sigmoid", "ipo"] = field_("sigmoid", help="sigmoid (DPO) | ipo")
    label_smoothing: float = field_(0.0, help="conservative DPO: assumed label-flip rate in [0, 0.5)")
    nll_weight: float = field_(0.0, help="weight of the per-token NLL on the chosen response (0 = off)")
    reference: Literal["cached", "on_the_fly"] = field_(
        "cached", help="cached: ref log-probs once before training | on_the_fly"
    )
    ref_model: str = field_("", help="reference model path (default: the starting policy)")
    max_length: int = field_(512, help="max tokens of prompt + the longer response (oldest history dropped)")
    truncate_response: bool = field_(False, help="cut over-long responses instead of raising an error")
    batch_size: int = field_(4, help="pairs per micro-batch per device (2x sequences per forward)")

    def __post_init__(self) -> None:
        from chatglm_rlhf.errors import ConfigError

        choices = {"pairs_from": ("data", "rm"), "loss_type": ("sigmoid", "ipo")}
        choices["reference"] = ("cached", "on_the_fly")
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"dpo: {key} must be one of {list(allowed)}, got {getattr(self, key)!r}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"dpo: label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.loss_type == "ipo" and self.label_smoothing:
            raise ConfigError("dpo: label_smoothing applies to loss_type=sigmoid only")
        if self.beta <= 0:
            raise ConfigError(f"dpo: beta must be > 0, got {self.beta}")
