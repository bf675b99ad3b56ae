"""``RMConfig``: the settings of ``rm train`` (torch-free, so the CLI's ``--help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from chatglm_rlhf.config import field_


@dataclass
class RMConfig:
    model: str = field_(
        "", help="backbone: an SFT causal-LM checkpoint, an encoder, or a saved RM (required)"
    )
    data: str = field_("", help="training pairs: any preference format (e.g. the filter's output)")
    eval_data: str | None = field_(None, help="held-out pairs for the eval report")
    output_dir: str = field_("out/rm", help="where the reward model, report and checkpoints go")
    format: str = field_("auto", help="input format: auto | ours | trl_* | hh")
    max_length: int = field_(512, help="max tokens per sequence (oldest history dropped first)")
    epochs: float = field_(1.0, help="passes over the data (fractions allowed)")
    max_steps: int = field_(-1, help="stop after this many optimizer steps (-1: from epochs)")
    batch_size: int = field_(8, help="pairs per micro-batch per device (2x sequences per forward)")
    grad_accum: int = field_(1, help="micro-batches per optimizer step")
    lr: float = field_(1e-5, help="peak learning rate (AdamW)")
    head_lr: float | None = field_(None, help="learning rate of the new score head (default: lr)")
    weight_decay: float = field_(0.0, help="AdamW weight decay")
    warmup_ratio: float = field_(0.03, help="fraction of steps with linear warmup")
    lr_schedule: str = field_("cosine", help="constant | linear | cosine (after warmup)")
    max_grad_norm: float = field_(1.0, help="gradient clipping (0 = off)")
    reg_coef: float = field_(0.0, help="the paper's score regulariser lambda*(r_c^2 + r_r^2) (0 = off)")
    center_coef: float = field_(0.0, help="TRL-style centering lambda*(r_c + r_r)^2 (0 = off)")
    margin_scale: float = field_(0.0, help="margin = scale * label strength in the BT loss (0 = off)")
    use_ties: bool = field_(True, help="train on tie labels as 0.5 targets (else skip them)")
    use_weights: bool = field_(True, help="weight pairs by meta.weight (length re-weighting)")
    length_grouping: bool = field_(True, help="form micro-batches from pairs of similar length")
    eval_buckets: list[int] = field_([3, 10, 30, 100], help="length-difference buckets of the report")
    seed: int = field_(42, help="seed for init, data order and dropout")
    mixed_precision: str = field_("auto", help="auto (bf16 on CUDA, none on CPU) | no | bf16 | fp16")
    cpu: bool = field_(False, help="force CPU even when a GPU is present")
    gradient_checkpointing: bool = field_(False, help="trade compute for memory")
    trust_remote_code: bool = field_(False, help="allow model code from the checkpoint (ChatGLM3 needs it)")
    lora_r: int = field_(0, help="LoRA rank (0 = full fine-tuning)")
    lora_alpha: int = field_(16, help="LoRA alpha")
    log_every: int = field_(10, help="log metrics every N steps")
    save_every: int = field_(0, help="checkpoint every N steps (0 = only at the end)")
    resume: bool = field_(False, help="continue from the last checkpoint in output_dir")
    progress: bool = field_(True, help="show a progress bar")
