"""The settings every trainer shares (SFT, RM, PPO, DPO), declared once with their help text.

A stage config extends :class:`TrainerConfig` (PPO) or :class:`EpochTrainerConfig` (the trainers that
pass over a dataset with a learning-rate schedule: SFT, RM, DPO) and changes a default with
:func:`~chatglm_rlhf.config.default_`, which keeps the help text written here. Torch-free, so the
CLI's ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from chatglm_rlhf.config import FRACTION, NON_NEGATIVE, POSITIVE, field_, inherit_help
from chatglm_rlhf.errors import ConfigError

MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
LRSchedule = Literal["constant", "linear", "cosine"]
ReportTo = Literal["none", "tensorboard", "wandb"]


@dataclass
class TrainerConfig:
    # `device=` (the word of evaluate and of a pipeline run) works here too; cpu is the field it sets.
    VALUE_ALIASES: ClassVar[dict[str, tuple[str, dict]]] = {
        "device": ("cpu", {"cpu": True, "cuda": False, "auto": False})
    }

    model: str = field_("", help="model to start from: local path or hub id (required)")
    output_dir: str = field_("out", help="where the trained model, logs and checkpoints go")
    lr: float = field_(
        1e-5,
        help="learning rate (AdamW): the peak of lr_schedule, constant where there is none",
        check=POSITIVE,
    )
    weight_decay: float = field_(0.0, help="AdamW weight decay", check=NON_NEGATIVE)
    max_grad_norm: float = field_(
        1.0, help="gradient clipping (0 = off); PPO clips actor and critic separately", check=NON_NEGATIVE
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
    log_every: int = field_(10, help="log metrics every N steps", check=POSITIVE)
    save_every: int = field_(0, help="checkpoint every N steps (0 = only at the end)", check=NON_NEGATIVE)
    resume: bool = field_(False, help="continue from the last checkpoint in output_dir")
    progress: bool = field_(True, help="show progress bars")
    strict: bool = field_(
        False, help="stop with an error when any line of a data file is rejected (default: report and skip)"
    )
    threads: int = field_(0, help="torch CPU threads (0 = torch's default)", check=NON_NEGATIVE)
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

    ALIASES: ClassVar[dict[str, str]] = {"steps": "max_steps"}  # the online trainers' word for their budget

    epochs: float = field_(1.0, help="passes over the data (fractions allowed)", check=POSITIVE)
    max_steps: int = field_(
        -1,
        help="stop after this many optimizer steps (-1: from epochs)",
        check=(lambda v: v == -1 or v >= 1, "-1 or >= 1"),
    )
    grad_accum: int = field_(1, help="micro-batches per optimizer step", check=POSITIVE)
    warmup_ratio: float = field_(0.03, help="fraction of steps with linear warmup", check=FRACTION)
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
