"""Loading, building and saving reward models: any HF backbone as a one-output sequence scorer.

``AutoModelForSequenceClassification(num_labels=1)`` covers both kinds:

* decoders (GLM, Llama, Qwen...): a linear ``score`` head on every position; transformers picks the
  rightmost token that is not ``pad_token_id``, so the config's ``pad_token_id`` must be set (we set it
  from the tokenizer). Loading an SFT causal-LM checkpoint this way keeps its transformer weights and
  adds a freshly initialised head: the paper's "initialise the RM from the SFT model".
* encoders (BERT, MiniLM...): the pooled ``[CLS]`` goes through a linear classifier.

A saved RM is a plain ``save_pretrained`` folder (LoRA merged) plus ``reward_model.json`` with the
settings scoring needs (``max_length``), so ``RewardScorer.from_pretrained`` reloads it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.utils.files import atomic_save

log = logging.getLogger(__name__)
INFO_FILE = "reward_model.json"


def load_rm_tokenizer(path: str, trust_remote_code: bool = False, key: str = "model"):
    """The tokenizer with right padding (encoders pool position 0) and a pad token."""
    from transformers import AutoTokenizer

    from chatglm_rlhf.models.loading import model_source

    with model_source(path, key):
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, padding_side="right")
    if tok.pad_token is None:
        # Padding is masked by the attention mask; with pad == eos a decoder scores the token before eos.
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    if tok.pad_token is None:
        raise UserError(f"{path}: the tokenizer has no pad, eos or unk token to pad with")
    return tok


def lora_config(r: int, alpha: int, dropout: float = 0.0, target_modules: list[str] | None = None):
    """A peft SEQ_CLS LoRA config; peft also trains (not adapts) the new score/classifier head."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules or "all-linear",
        task_type=TaskType.SEQ_CLS,
    )


def load_reward_model(
    path: str,
    *,
    trust_remote_code: bool = False,
    dtype: str | torch.dtype = "fp32",
    device: str = "cpu",
    lora_r: int = 0,
    lora_alpha: int = 16,
    gradient_checkpointing: bool = False,
    tokenizer=None,
    key: str = "model",
    heads: int | None = None,
):
    """``(model, tokenizer)``: a sequence scorer from a saved RM, an SFT causal LM or an encoder.

    ``heads``: score heads (2 for ODIN's quality + length, :func:`head_scores`); None: as the saved RM
    has them (``reward_model.json``), else 1. A head count other than the checkpoint's starts new heads.
    """
    from transformers import AutoModelForSequenceClassification

    from chatglm_rlhf.models.loading import (
        _dtype_kwarg,
        _enable_checkpointing,
        model_source,
        pick_device,
        pick_dtype,
    )

    if not path:
        raise UserError("rm: model=... is required (an SFT checkpoint, an encoder, or a saved RM)")
    tok = tokenizer if tokenizer is not None else load_rm_tokenizer(path, trust_remote_code, key)
    dev = pick_device(device)
    kwargs: dict[str, Any] = {_dtype_kwarg(): pick_dtype(dev, dtype), "trust_remote_code": trust_remote_code}
    saved = int(read_info(path).get("heads", 1)) if Path(path).is_dir() else 1
    heads = heads or saved
    with model_source(path, key):  # quiet: its load table flags the expected "score missing"
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=heads, output_loading_info=True, ignore_mismatched_sizes=heads != saved, **kwargs
        )
    _report_loading(path, info)
    prepare_scorer_config(model, tok, heads)
    model.to(dev)
    if gradient_checkpointing:
        _enable_checkpointing(model)
    if lora_r > 0:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(lora_r, lora_alpha))
    return model, tok


def _report_loading(path: str, info: dict[str, Any]) -> None:
    missing = sorted(info.get("missing_keys") or [])
    head = [k for k in missing if k.split(".")[0] in ("score", "classifier")]
    other = [k for k in missing if k not in head]
    if head:
        log.info("%s: new reward head %s initialised (backbone weights loaded)", path, ", ".join(head))
    if other:
        # Backbone weights that did not load mean a wrong checkpoint, not a fresh head: say so loudly.
        log.warning(
            "%s: %d backbone weights were not in the checkpoint, e.g. %s", path, len(other), other[:3]
        )
    if info.get("mismatched_keys"):
        log.warning(
            "%s: shape-mismatched weights re-initialised: %s", path, sorted(info["mismatched_keys"])[:3]
        )


def prepare_scorer_config(model, tokenizer, heads: int = 1) -> None:
    """Set ``pad_token_id`` (decoders find the scored token with it) and regression-style labels."""
    model.config.pad_token_id = tokenizer.pad_token_id
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    if text_config is not None and text_config is not model.config:
        text_config.pad_token_id = tokenizer.pad_token_id
    model.config.num_labels = heads
    model.config.problem_type = "regression"


def reward_model_from_causal(causal_model, tokenizer):
    """An in-memory sequence scorer with the weights of ``causal_model``'s transformer (tests, demos)."""
    from transformers import AutoModelForSequenceClassification

    config = causal_model.config.__class__.from_dict(causal_model.config.to_dict())
    config.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config)
    missing, _ = model.load_state_dict(causal_model.state_dict(), strict=False)
    head = [k for k in missing if not k.startswith(("score", "classifier"))]
    if head:
        raise ValueError(f"backbone weights did not transfer: missing {head[:4]}")
    prepare_scorer_config(model, tokenizer)
    return model


def rewards(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One scalar reward per row, ``(N,)`` in fp32: the first head's (with a length head, the quality)."""
    return head_scores(model, input_ids, attention_mask)[:, 0]


def head_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Every head's score per row, ``(N, heads)`` in fp32 (heads: 1, or 2 with ``length_head``)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask)
    return out.logits.float().reshape(input_ids.shape[0], -1)


def score_head(model) -> torch.nn.Module:
    """The linear layer that maps the pooled hidden state to the heads' scores."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name in ("score", "classifier"):
        head = getattr(base, name, None)
        if head is None:
            continue
        saved = getattr(head, "modules_to_save", None)  # peft's trainable copy of the head
        return saved["default"] if saved is not None and "default" in saved else head
    raise ValueError(f"{type(base).__name__}: no score head (score / classifier)")


def save_reward_model(
    model, tokenizer, out_dir: str | Path, info: dict[str, Any], state_dict: dict | None = None
) -> Path:
    """``save_pretrained`` (LoRA merged) + tokenizer + ``reward_model.json``.

    ``state_dict``: the weights to write instead of ``model``'s own (a trainer passes the state dict it
    gathered from all ranks, since under FSDP / ZeRO-3 the local model holds only a shard).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):  # peft: a plain model that from_pretrained loads
        model, state_dict = model.merge_and_unload(), None
    with atomic_save(out) as tmp:  # a kill or a full disk never leaves half a model in out
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / INFO_FILE).write_text(json.dumps({"reward_model": True, **info}, indent=2))
    return out


def read_info(path: str | Path) -> dict[str, Any]:
    f = Path(path) / INFO_FILE
    return json.loads(f.read_text()) if f.exists() else {}
