"""The four PPO roles and the forward passes over (prompt + response) batches.

* **actor**: the policy being trained, a causal LM initialised from the SFT model (optionally LoRA).
* **critic**: by default a separate :class:`ValueModel` (a transformer body + :class:`ValueHead`),
  initialised from the reward model's backbone or the SFT model. With ``shared_backbone`` the value
  head sits on the actor's own last hidden states instead (:class:`PolicyWithValue`): one forward
  pass gives logits and values, and one backward pass trains both (the paper's "fused" update).
* **reference**: the frozen SFT model. With a LoRA actor it is the same weights with the adapter
  disabled, so no second copy is held.
* **reward**: any object with ``score(samples, responses)``; it never appears here.

Batch layout (:class:`SeqBatch`): every row is ``[left-padded prompt | right-padded response]``, so all
responses start at the same column ``prompt_width``. Position ids are derived from the attention mask
exactly as ``generate`` derives them, so log-probs computed here match those seen while sampling.
"""

from __future__ import annotations

import copy
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


# --- value head and critic ---------------------------------------------------------------------------


def hidden_size_of(config) -> int:
    for name in ("hidden_size", "n_embd", "d_model"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    raise ValueError(f"cannot find the hidden size in {type(config).__name__}")


class ValueHead(nn.Module):
    """A scalar value per position from the backbone's last hidden states.

    Small initial weights and a zero bias: the first values are near 0, so the first value losses do not
    swamp a shared backbone's gradients. The init uses its own seeded generator, so it does not depend
    on (or disturb) the global RNG: two runs with the same config start from the same head.
    """

    def __init__(self, hidden_size: int, seed: int = 0):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            init = torch.randn(self.summary.weight.shape, generator=gen) / (hidden_size + 1)
            self.summary.weight.copy_(init)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def _last_hidden(out) -> torch.Tensor:
    h = getattr(out, "last_hidden_state", None)
    return h if h is not None else out.hidden_states[-1]


class ValueModel(nn.Module):
    """A separate critic: a transformer body (no LM head) with a :class:`ValueHead`."""

    def __init__(self, backbone: nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.head = ValueHead(hidden_size)

    @classmethod
    def from_causal_lm(cls, lm: nn.Module) -> ValueModel:
        """A copy of ``lm``'s body (its weights, not shared) with a fresh value head."""
        base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm  # unwrap peft
        body = copy.deepcopy(getattr(base, "base_model", base))
        for p in body.parameters():
            p.requires_grad_(True)
        return cls(body, hidden_size_of(base.config))

    @classmethod
    def from_pretrained(cls, path: str, device, dtype=torch.float32, trust_remote_code: bool = False):
        """The body of any checkpoint (causal LM or sequence classifier) plus a fresh value head."""
        from transformers import AutoModel

        from chatglm_rlhf.models.loading import _dtype_kwarg, model_source

        with model_source(path, "critic_from"):
            body = AutoModel.from_pretrained(
                path, **{_dtype_kwarg(): dtype}, trust_remote_code=trust_remote_code
            )
        return cls(body.to(device), hidden_size_of(body.config)).to(device)

    def forward(self, batch: SeqBatch) -> torch.Tensor:
        """Values of the states before each response token: (B, R)."""
        out = self.backbone(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
        )
        P = batch.prompt_width
        return self.head(_last_hidden(out)[:, P - 1 : -1])


class PolicyWithValue(nn.Module):
    """Shared backbone: the actor LM plus a value head on its last hidden states (one module to train)."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
        self.v_head = ValueHead(hidden_size_of(base.config))

    def forward(self, batch: SeqBatch | None = None, **lm_inputs):
        """(response logits (B, R, V), values (B, R)) of ``batch``; without it, the LM's output on
        ``lm_inputs`` (the ptx loss). Both go through this module so a DDP / FSDP wrapper sees them."""
        if batch is None:
            return self.lm(**lm_inputs)
        logits, h = lm_forward(self.lm, batch, hidden=True)
        return logits, self.v_head(h)


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
    """The roles every policy-gradient trainer has: the actor and the frozen reference (PPO adds a
    critic; the critic-free trainers of ``policy/pg`` use this as it is)."""

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


@dataclass
class PPOModels(ActorWithReference):
    """The trainable and frozen roles, with the forward passes PPO needs."""

    critic: ValueModel | None = None  # separate critic; None with a shared backbone
    shared: PolicyWithValue | None = None  # shared backbone: wraps ``actor`` + value head

    def __post_init__(self) -> None:
        if (self.critic is None) == (self.shared is None):
            raise ValueError("give exactly one of critic (separate) and shared (shared backbone)")
        super().__post_init__()

    @property
    def trainable(self) -> list[nn.Module]:
        """The modules the optimizer updates (and checkpoints save)."""
        return [self.shared] if self.shared is not None else [self.actor, self.critic]

    def policy(self, batch: SeqBatch, with_values: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Actor logits over the response (B, R, V) and, on a shared backbone, values (B, R)."""
        if self.shared is not None and with_values:
            logits, h = lm_forward(self.actor, batch, hidden=True)
            return logits, self.shared.v_head(h)
        return lm_forward(self.actor, batch)[0], None

    def train_outputs(self, batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The training forward (with grad) through the prepared modules: (logits (B, R, V), values (B, R))."""
        mods = self.prepared or self.trainable
        if self.shared is not None:
            return mods[0](batch)
        return lm_forward(mods[0], batch)[0], mods[1](batch)

    def train_lm(self, **inputs):
        """The actor LM's output on ``inputs`` (the ptx loss), through the prepared module."""
        mods = self.prepared or self.trainable
        return mods[0](**inputs) if self.shared is None else mods[0](None, **inputs)

    def values(self, batch: SeqBatch) -> torch.Tensor:
        if self.critic is not None:
            return self.critic(batch)
        return self.policy(batch, with_values=True)[1]

    def shard(self, mesh) -> None:
        """FSDP2 over every role (``fsdp=true``): the trainable ones and the frozen reference, each
        sharded per transformer block. In place, so the generator's actor is the sharded one too; on a
        shared backbone the LM and the value head are units of their own because the rollout calls
        them without the wrapper (:func:`chatglm_rlhf.utils.fsdp.shard`)."""
        from chatglm_rlhf.utils.fsdp import shard

        if self.shared is None:
            super().shard(mesh)
            shard(self.critic, mesh)
            return
        shard(self.shared, mesh, entries=[self.shared.lm, self.shared.v_head])
        if self.reference is not None:
            shard(self.reference, mesh)

    @property
    def sampler(self) -> nn.Module:
        """The actor, or on a shared backbone the module around it (whose FSDP unit holds the actor's
        embeddings and head)."""
        return self.shared if self.shared is not None else self.actor


def build_models(
    actor: nn.Module,
    tokenizer,
    shared_backbone: bool = False,
    reference: nn.Module | None = None,
    critic: ValueModel | None = None,
) -> PPOModels:
    """Roles from an in-memory actor. Without ``reference``: a frozen copy, or none for a LoRA actor.

    Without ``critic`` (and no shared backbone): a copy of the actor's body with a fresh value head.
    """
    is_lora = hasattr(actor, "disable_adapter")
    if reference is None and not is_lora:
        reference = copy.deepcopy(actor)
    if shared_backbone:
        return PPOModels(actor, tokenizer, shared=PolicyWithValue(actor), reference=reference)
    return PPOModels(actor, tokenizer, critic=critic or ValueModel.from_causal_lm(actor), reference=reference)


# --- loading from checkpoints ------------------------------------------------------------------------


def critic_source(critic_from: str, sft_model: str, reward_model: str) -> str:
    """Where the critic's body comes from: ``auto`` = the reward model if given, else the SFT model."""
    if critic_from == "auto":
        return reward_model or sft_model
    if critic_from == "sft":
        return sft_model
    if critic_from == "rm":
        if not reward_model:
            from chatglm_rlhf.errors import ConfigError

            raise ConfigError("ppo: critic_from=rm needs reward_model=...")
        return reward_model
    return critic_from


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
    reference = (
        None if lora else load_causal_lm(cfg.model, dtype="auto", device=device, trust_remote_code=trust)
    )
    return ActorWithReference(actor, tok, reference=reference)


def load_ppo_models(cfg, device: str) -> PPOModels:
    """Actor, reference and critic for a :class:`~chatglm_rlhf.policy.ppo.PPOConfig`, on ``device``.

    Trainable weights stay fp32 (autocast supplies bf16 on GPU); the frozen reference loads in the
    device's default dtype (bf16 on CUDA). With LoRA the critic's body gets adapters too.
    """
    from chatglm_rlhf.models.loading import LoraSettings, _enable_checkpointing

    trust = cfg.trust_remote_code
    roles = load_actor_and_reference(cfg, device)
    actor, tok, reference = roles.actor, roles.tokenizer, roles.reference
    lora = LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha) if cfg.lora_r > 0 else None
    if cfg.shared_backbone:
        return PPOModels(actor, tok, shared=PolicyWithValue(actor).to(device), reference=reference)
    critic = ValueModel.from_pretrained(
        critic_source(cfg.critic_from, cfg.model, cfg.reward_model), device, trust_remote_code=trust
    )
    if cfg.gradient_checkpointing:
        _enable_checkpointing(critic.backbone)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        body = LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules="all-linear")
        critic.backbone = get_peft_model(critic.backbone, body)
    return PPOModels(actor, tok, critic=critic, reference=reference)


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
