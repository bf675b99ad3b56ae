"""The roles every policy trainer shares and the forward passes over (prompt + response) batches.

* **actor**: the policy being trained, a causal LM initialised from the SFT model (optionally LoRA).
* **reference**: the frozen SFT model. With a LoRA actor it is the same weights with the adapter
  disabled, so no second copy is held.
* The critic (only the ``gae`` estimator asks for one) is in :mod:`chatglm_rlhf.policy.online.critic`.

Batch layout (:class:`SeqBatch`): every row is ``[left-padded prompt | right-padded response]``, so all
responses start at the same column ``prompt_width``. Position ids are derived from the attention mask
exactly as ``generate`` derives them, so log-probs computed here match those seen while sampling.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

# --- batches -----------------------------------------------------------------------------------------


@dataclass
class SeqBatch:
    input_ids: torch.Tensor  # (B, L) = (B, P + R)
    attention_mask: torch.Tensor  # (B, L)
    response_mask: torch.Tensor  # (B, R): 1 on real response tokens (eos included)
    prompt_width: int  # P

    @property
    def position_ids(self) -> torch.Tensor:
        # Same as generate(): count real tokens so left padding does not shift positions.
        return (self.attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_width :]

    def to(self, device) -> SeqBatch:
        return SeqBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.response_mask.to(device),
            self.prompt_width,
        )

    def select(self, rows: torch.Tensor | list[int]) -> tuple[SeqBatch, int]:
        """Rows ``rows``, with columns that are padding in every selected row trimmed.

        Returns the batch and the response width kept (callers trim their (B, R) tensors to it).
        """
        rows = torch.as_tensor(rows, dtype=torch.long)
        ids, att, resp = self.input_ids[rows], self.attention_mask[rows], self.response_mask[rows]
        prompt_att = att[:, : self.prompt_width]
        left = int((prompt_att.sum(0) == 0).long().cumprod(0).sum())  # all-pad leading columns
        left = min(left, self.prompt_width - 1)  # keep at least one prompt column (it predicts token 0)
        r = max(1, int(resp.sum(-1).max())) if resp.numel() else 1
        end = self.prompt_width + r
        return SeqBatch(ids[:, left:end], att[:, left:end], resp[:, :r], self.prompt_width - left), r


def build_seq_batch(prompts: list[list[int]], responses: list[list[int]], pad_id: int) -> SeqBatch:
    """Left-pad the prompts, right-pad the responses, and join them."""
    if len(prompts) != len(responses):
        raise ValueError("one response per prompt expected")
    P = max(len(p) for p in prompts)
    R = max(1, max(len(r) for r in responses))
    B = len(prompts)
    ids = torch.full((B, P + R), pad_id, dtype=torch.long)
    att = torch.zeros((B, P + R), dtype=torch.long)
    resp = torch.zeros((B, R), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, P - len(p) : P] = torch.tensor(p, dtype=torch.long)
        att[i, P - len(p) : P] = 1
        if r:
            ids[i, P : P + len(r)] = torch.tensor(r, dtype=torch.long)
            att[i, P : P + len(r)] = 1
            resp[i, : len(r)] = 1
    return SeqBatch(ids, att, resp, P)


def hidden_size_of(config) -> int:
    for name in ("hidden_size", "n_embd", "d_model"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    raise ValueError(f"cannot find the hidden size in {type(config).__name__}")


# --- forward passes ----------------------------------------------------------------------------------


def _accepts(model, name: str) -> bool:
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model)  # a DDP / FSDP / DeepSpeed wrapper's forward takes **kwargs
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(base.forward).parameters


def lm_forward(lm, batch: SeqBatch, hidden: bool = False):
    """Logits of the positions that predict the response tokens, (B, R, V); hidden states with ``hidden``.

    With ``logits_to_keep`` (most HF models) the LM head runs on the last R + 1 positions only: a
    large saving for long prompts and big vocabularies.
    """
    R = batch.input_ids.shape[1] - batch.prompt_width
    kwargs = {}
    if _accepts(lm, "logits_to_keep"):
        kwargs["logits_to_keep"] = R + 1
    out = lm(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        output_hidden_states=hidden,
        use_cache=False,
        **kwargs,
    )
    logits = out.logits[:, -(R + 1) : -1]
    h = out.hidden_states[-1][:, batch.prompt_width - 1 : -1] if hidden else None
    return logits, h


def response_logprobs(logits: torch.Tensor, batch: SeqBatch, temperature: float = 1.0) -> torch.Tensor:
    """log p(response token t) from the (B, R, V) logits of :func:`lm_forward` (logit - logsumexp).

    ``temperature``: that of the sampler, so that the log-probs are those of the distribution the
    responses were drawn from (the ratio and the KL then stay on-policy at temperature != 1).
    """
    logits = logits.float() / temperature
    picked = torch.gather(logits, -1, batch.response_ids.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


@dataclass
class ActorWithReference:
    """The roles every online trainer has: the actor and the frozen reference (the ``gae`` estimator
    adds a critic: :class:`chatglm_rlhf.policy.online.critic.ActorCritic`)."""

    actor: nn.Module  # the causal LM (maybe a peft model); generation uses it
    tokenizer: object
    reference: nn.Module | None = None  # frozen SFT copy; None: the LoRA actor with adapters off
    # ``trainable`` as ``Accelerator.prepare`` returned them (DDP / FSDP / DeepSpeed wrappers): the
    # training forwards go through these so that gradients are synchronised across processes.
    prepared: list[nn.Module] | None = None

    def __post_init__(self) -> None:
        if self.reference is None and not hasattr(self.actor, "disable_adapter"):
            raise ValueError("without a reference model the actor must be a LoRA (peft) model")
        if self.reference is not None:
            self.reference.eval()
            for p in self.reference.parameters():
                p.requires_grad_(False)

    @property
    def trainable(self) -> list[nn.Module]:
        """The modules the optimizer updates (and checkpoints save)."""
        return [self.actor]

    def train_lm(self, **inputs):
        """The actor LM's output on ``inputs`` (the ptx loss), through the prepared module."""
        return (self.prepared or self.trainable)[0](**inputs)

    @torch.no_grad()
    def reference_logprobs(self, batch: SeqBatch, temperature: float = 1.0) -> torch.Tensor:
        if self.reference is not None:
            return response_logprobs(lm_forward(self.reference, batch)[0], batch, temperature)
        with self.actor.disable_adapter():
            return response_logprobs(lm_forward(self.actor, batch)[0], batch, temperature)

    def shard(self, mesh) -> None:
        """FSDP2 (``fsdp=true``) over the actor and the frozen reference, each per transformer block; in
        place, so the generator's actor is the sharded one too (:func:`chatglm_rlhf.utils.fsdp.shard`)."""
        from chatglm_rlhf.utils.fsdp import shard

        shard(self.actor, mesh)
        if self.reference is not None:
            shard(self.reference, mesh)

    @property
    def sampler(self) -> nn.Module:
        """The module whose weights generation needs whole (``utils.fsdp.full_params``)."""
        return self.actor

    def reference_lm(self):
        """A context manager giving the frozen SFT policy as an LM (for generating baseline answers)."""
        from contextlib import contextmanager

        @contextmanager
        def ctx():
            if self.reference is not None:
                yield self.reference
            else:
                with self.actor.disable_adapter():
                    yield self.actor

        return ctx()


def load_actor_and_reference(cfg, device: str) -> ActorWithReference:
    """The actor (fp32, LoRA when ``cfg.lora_r > 0``), its tokenizer and the frozen reference (none with
    LoRA: the actor with its adapters off) for any trainer config with the shared model keys."""
    from chatglm_rlhf.models.loading import LoraSettings, load_causal_lm, load_tokenizer

    trust = cfg.trust_remote_code
    tok = load_tokenizer(cfg.model, trust_remote_code=trust)
    lora = LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha) if cfg.lora_r > 0 else None
    actor = load_causal_lm(
        cfg.model, dtype="fp32", device=device, trust_remote_code=trust, lora=lora,
        gradient_checkpointing=cfg.gradient_checkpointing,
    )  # fmt: skip
    # A reference other than the start (``reference_model``: a later feedback round) is loaded on its
    # own even with LoRA: the adapter-free actor would be the previous round's policy, not SFT.
    ref_path = getattr(cfg, "reference_model", "") or cfg.model
    reference = (
        None
        if lora and ref_path == cfg.model
        else load_causal_lm(ref_path, dtype="auto", device=device, trust_remote_code=trust)
    )
    return ActorWithReference(actor, tok, reference=reference)


def save_plain(actor, out_dir, state: dict[str, torch.Tensor] | None = None) -> None:
    """Save the actor so ``from_pretrained`` loads it; a LoRA actor is saved merged, *without* merging
    it in place (its adapters stay usable, and the adapter-disabled reference stays the base).

    ``state``: the actor's full state dict (``Accelerator.get_state_dict``: under FSDP / ZeRO-3 the
    module itself holds only this rank's shard); default: the module's own.
    """
    if not hasattr(actor, "get_base_model"):
        actor.save_pretrained(out_dir, state_dict=state, safe_serialization=True)
        return
    from peft.tuners.lora import LoraLayer

    base = actor.get_base_model()
    prefix = "base_model.model."  # a PeftModel's state-dict keys = its base model's, with this prefix
    full = base.state_dict() if state is None else {k.removeprefix(prefix): v for k, v in state.items()}
    deltas = {
        name: _lora_delta(module, adapter, name, full)
        for name, module in base.named_modules()
        if isinstance(module, LoraLayer)
        for adapter in module.active_adapters
    }
    out = {}
    for key, value in full.items():
        if "lora_" in key:
            continue
        owner, _, leaf = key.rpartition(".base_layer.")
        if owner and leaf == "weight" and owner in deltas:
            value = value + deltas[owner].to(value.dtype)
        out[key.replace(".base_layer.", ".")] = value.detach()
    base.save_pretrained(out_dir, state_dict=out, safe_serialization=True)


def _lora_delta(module, adapter: str, name: str, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """A LoRA layer's weight delta: peft's own when the module holds whole factors (one process, DDP),
    else from the gathered state dict (FSDP / ZeRO-3 leave each rank a shard or an empty placeholder)."""
    a, b = state.get(f"{name}.lora_A.{adapter}.weight"), state.get(f"{name}.lora_B.{adapter}.weight")
    factors = getattr(module, "lora_A", None)
    own = factors[adapter] if factors is not None and adapter in factors else None
    if a is None or b is None:
        return module.get_delta_weight(adapter)
    from chatglm_rlhf.utils.fsdp import is_sharded

    # An FSDP2 factor is a DTensor with the whole shape but only a shard of the values.
    if own is not None and own.weight.shape == a.shape and not is_sharded(own.weight):
        return module.get_delta_weight(adapter)
    delta = b.float() @ a.float()
    return (delta.T if module.fan_in_fan_out else delta) * module.scaling[adapter]
