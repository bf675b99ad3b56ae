"""The settings every trainer shares (SFT, RM, PPO, DPO), declared once with their help text.

A stage config extends :class:`TrainerConfig` (PPO) or :class:`EpochTrainerConfig` (the trainers that
pass over a dataset with a learning-rate schedule: SFT, RM, DPO) and changes a default with
:func:`~chatglm_rlhf.config.default_`, which keeps the help text written here. Torch-free, so the
CLI's ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chatglm_rlhf.config import field_, inherit_help
from chatglm_rlhf.errors import ConfigError

MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
LRSchedule = Literal["constant", "linear", "cosine"]
ReportTo = Literal["none", "tensorboard", "wandb"]


@dataclass
class TrainerConfig:
    model: str = field_("", help="model to start from: local path or hub id (required)")
    output_dir: str = field_("out", help="where the trained model, logs and checkpoints go")
    lr: float = field_(
        1e-5, help="learning rate (AdamW): the peak of lr_schedule, constant where there is none"
    )
    weight_decay: float = field_(0.0, help="AdamW weight decay")
    max_grad_norm: float = field_(
        1.0, help="gradient clipping (0 = off); PPO clips actor and critic separately"
    )
    seed: int = field_(42, help="seed for init, data order, sampling and dropout")
    mixed_precision: MixedPrecision = field_("auto", help="auto = bf16 on CUDA, none on CPU")
    cpu: bool = field_(False, help="force CPU even when a GPU is present")
    gradient_checkpointing: bool = field_(
        False, help="trade compute for memory (slow on CPU: off by default)"
    )
    trust_remote_code: bool = field_(False, help="allow model code from the checkpoint (ChatGLM3 needs it)")
    lora_r: int = field_(
        0,
        help="LoRA rank (0 = full fine-tuning); with LoRA, PPO's and DPO's reference is the adapter-free base",
    )
    lora_alpha: int = field_(16, help="LoRA alpha")
    log_every: int = field_(10, help="log metrics every N steps")
    save_every: int = field_(0, help="checkpoint every N steps (0 = only at the end)")
    resume: bool = field_(False, help="continue from the last checkpoint in output_dir")
    progress: bool = field_(True, help="show progress bars")
    strict: bool = field_(
        False, help="stop with an error when any line of a data file is rejected (default: report and skip)"
    )
    threads: int = field_(0, help="torch CPU threads (0 = torch's default)")
    report_to: ReportTo = field_(
        "none",
        help="metrics besides metrics.jsonl: tensorboard (OUT/tb) | wandb (offline run in OUT/wandb)",
    )

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        inherit_help(cls)  # before @dataclass reads the subclass: its default_() become fields


@dataclass
class EpochTrainerConfig(TrainerConfig):
    """A trainer that passes over a dataset (epochs or a step budget) under a warmup + decay schedule."""

    epochs: float = field_(1.0, help="passes over the data (fractions allowed)")
    max_steps: int = field_(-1, help="stop after this many optimizer steps (-1: from epochs)")
    grad_accum: int = field_(1, help="micro-batches per optimizer step")
    warmup_ratio: float = field_(0.03, help="fraction of steps with linear warmup")
    lr_schedule: LRSchedule = field_("cosine", help="learning-rate decay after warmup")


def require_reporter(report_to: str) -> None:
    """``report_to=wandb`` without the wandb package: a one-line error saying how to install it."""
    if report_to != "wandb":
        return
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        raise ConfigError(
            "report_to=wandb needs the wandb package: pip install wandb (or pip install 'chatglm-rlhf[wandb]')"
        )
