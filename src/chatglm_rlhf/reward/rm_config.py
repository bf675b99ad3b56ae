"""``RMConfig``: the settings of ``rm train`` (torch-free, so the CLI's ``--help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chatglm_rlhf.config import default_, field_
from chatglm_rlhf.data.formats import InputFormat
from chatglm_rlhf.utils.train_config import EpochTrainerConfig


@dataclass
class RMConfig(EpochTrainerConfig):
    PIPELINE_FILLED: ClassVar[tuple[str, ...]] = (
        "model",
        "output_dir",
        "data",
    )  # a pipeline's rm stage sets them

    model: str = default_(
        "", help="backbone: an SFT causal-LM checkpoint, an encoder, or a saved RM (required)"
    )
    output_dir: str = default_("out/rm", help="where the reward model, report and checkpoints go")
    data: str = field_("", help="training pairs: any preference format (e.g. the filter's output)")
    eval_data: str | None = field_(None, help="held-out pairs for the eval report")
    format: InputFormat = field_("auto", help="input format (auto = detect it from the records)")
    max_length: int = field_(512, help="max tokens per sequence (oldest history dropped first)")
    batch_size: int = field_(8, help="pairs per micro-batch per device (2x sequences per forward)")
    head_lr: float | None = field_(None, help="learning rate of the new score head (default: lr)")
    reg_coef: float = field_(
        1e-3,
        help="the paper's score regulariser lambda*(r_c^2 + r_r^2) (0 = off; the pipelines' value is the default)",
    )
    center_coef: float = field_(0.0, help="TRL-style centering lambda*(r_c + r_r)^2 (0 = off)")
    margin_scale: float = field_(0.0, help="margin = scale * label strength in the BT loss (0 = off)")
    use_ties: bool = field_(True, help="train on tie labels as 0.5 targets (else skip them)")
    use_weights: bool = field_(True, help="weight pairs by meta.weight (length re-weighting)")
    length_grouping: bool = field_(True, help="form micro-batches from pairs of similar length")
    length_head: bool = field_(
        False, added=True,
        help="ODIN: a second score head fitted to response length, the first kept uncorrelated with it; "
        "BT on their sum, only the first (quality) head is the reward",
    )  # fmt: skip
    length_coef: float = field_(
        1.0, added=True, help="length_head: weight of |corr(quality, L)| - corr(length head, L)"
    )
    ortho_coef: float = field_(
        1.0, added=True, help="length_head: weight of the heads' |cosine| (orthogonality)"
    )
    eval_buckets: list[int] = field_([3, 10, 30, 100], help="length-difference buckets of the report")

    def unused_fields(self) -> tuple[str, ...]:
        """Left out of fingerprints: the length head's weights without a length head (they change nothing),
        so that tuning them for the length_heads twin leaves the main RM's stage as it is."""
        return () if self.length_head else ("length_coef", "ortho_coef")
