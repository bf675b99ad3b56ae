"""Model and tokenizer loading, and the tiny local GLM used by tests and CPU demos."""

from chatglm_rlhf.models.loading import (
    LoraSettings,
    describe_model,
    load_causal_lm,
    load_tokenizer,
    pick_device,
    pick_dtype,
)
from chatglm_rlhf.models.tiny import build_tiny_model, make_tiny_checkpoint, train_tokenizer

__all__ = [
    "LoraSettings",
    "build_tiny_model",
    "describe_model",
    "load_causal_lm",
    "load_tokenizer",
    "make_tiny_checkpoint",
    "pick_device",
    "pick_dtype",
    "train_tokenizer",
]
