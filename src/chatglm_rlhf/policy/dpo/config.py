"""DPO's settings (:class:`DPOConfig`), checked when built so a bad key fails before any model loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chatglm_rlhf.config import field_
from chatglm_rlhf.models.generation import GenerationSettings


@dataclass
class DPOConfig:
    model: str = field_("", help="policy to start from (usually the SFT model): local path or hub id")
    output_dir: str = field_("out/dpo", help="where the trained model, pairs, caches and checkpoints go")
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
    epochs: float = field_(1.0, help="passes over the pairs (fractions allowed)")
    max_steps: int = field_(-1, help="stop after this many optimizer steps (-1: from epochs)")
    batch_size: int = field_(4, help="pairs per micro-batch per device (2x sequences per forward)")
    grad_accum: int = field_(1, help="micro-batches per optimizer step")
    lr: float = field_(1e-6, help="peak learning rate (AdamW)")
    weight_decay: float = field_(0.0, help="AdamW weight decay")
    warmup_ratio: float = field_(0.1, help="fraction of steps with linear warmup")
    lr_schedule: str = field_("linear", help="constant | linear | cosine (after warmup)")
    max_grad_norm: float = field_(1.0, help="gradient clipping (0 = off)")
    seed: int = field_(42, help="seed for init, sampling and data order")
    mixed_precision: str = field_("auto", help="auto (bf16 on CUDA, none on CPU) | no | bf16 | fp16")
    cpu: bool = field_(False, help="force CPU even when a GPU is present")
    gradient_checkpointing: bool = field_(False, help="trade compute for memory")
    trust_remote_code: bool = field_(False, help="allow model code from the checkpoint (ChatGLM3 needs it)")
    lora_r: int = field_(0, help="LoRA rank (0 = full fine-tuning); the reference is the adapter-free base")
    lora_alpha: int = field_(16, help="LoRA alpha")
    log_every: int = field_(10, help="log metrics every N steps")
    save_every: int = field_(0, help="checkpoint every N steps (0 = only at the end)")
    resume: bool = field_(False, help="continue from the last checkpoint in output_dir")
    progress: bool = field_(True, help="show progress bars")

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
