"""A tiny ChatGLM-like model and tokenizer built locally, for tests and CPU demos (never downloads).

The tokenizer is a byte-level BPE trained on the caller's texts, with ChatGLM3-style role tokens
(``<|system|>``, ``<|user|>``, ``<|assistant|>``) as single special tokens, ``<|endoftext|>`` as eos and
``<|pad|>`` as padding. Its chat template is :data:`chatglm_rlhf.data.templates.FALLBACK_TEMPLATE`::

    <|user|>\\n{question}<|assistant|>\\n{answer}<|endoftext|><|user|>\\n{prompt}<|assistant|>\\n

The model is transformers' native GLM architecture (``GlmForCausalLM``); at the defaults it has about
0.2M parameters, most of them in the embedding and output layers.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GlmConfig, GlmForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from chatglm_rlhf.data.templates import FALLBACK_TEMPLATE

PAD, EOS = "<|pad|>", "<|endoftext|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, EOS, *ROLE_TOKENS)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on ``texts``; every byte is in the alphabet, so any text round-trips."""
    backend = Tokenizer(models.BPE())
    # No prefix space: a response tokenised alone must match its tokens inside a rendered dialogue.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    # ``additional_special_tokens`` works in transformers 4.x and 5.x (5.x stores it as extra_special_tokens).
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, eos_token=EOS, additional_special_tokens=list(ROLE_TOKENS)
    )
    tokenizer.chat_template = FALLBACK_TEMPLATE
    return tokenizer


def build_tiny_model(
    tokenizer,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    seed: int = 0,
    architecture: str = "glm",
):
    """A randomly initialised ``GlmForCausalLM`` sized for ``tokenizer``; same seed, same weights.

    ``intermediate_size`` defaults to ``2 * hidden_size`` (ChatGLM uses ~3.3x; smaller keeps tests fast).
    ``architecture="llama"`` builds a ``LlamaForCausalLM`` instead: vLLM serves Llama natively (GLM only
    through its Transformers backend, which patches transformers' GLM classes in the trainer's process),
    and its CPU attention needs ``hidden_size / num_heads`` >= 32.
    The caller's global torch RNG is left untouched.
    """
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")
    if architecture not in ("glm", "llama"):
        raise ValueError(f"architecture must be glm or llama, got {architecture!r}")
    config_class, model_class = (
        (GlmConfig, GlmForCausalLM) if architecture == "glm" else (LlamaConfig, LlamaForCausalLM)
    )
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,  # GlmConfig defaults head_dim to 128 regardless of hidden_size
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def make_tiny_checkpoint(
    out_dir: str | Path, texts: Iterable[str], vocab_size: int = 1024, **model_kwargs
) -> Path:
    """Train a tokenizer, build a model and save both so ``Auto*.from_pretrained(out_dir)`` loads them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    model = build_tiny_model(tokenizer, **model_kwargs)
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
