"""The critic, which only the ``gae`` estimator (PPO) asks for, and the actor-critic roles.

* **critic**: by default a separate :class:`ValueModel` (a transformer body + :class:`ValueHead`),
  initialised from the reward model's backbone or the SFT model. With ``shared_backbone`` the value
  head sits on the actor's own last hidden states instead (:class:`PolicyWithValue`): one forward
  pass gives logits and values, and one backward pass trains both (the paper's "fused" update).
* The actor and the frozen reference are :class:`chatglm_rlhf.policy.models.ActorWithReference`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from chatglm_rlhf.policy.models import (
    ActorWithReference,
    SeqBatch,
    hidden_size_of,
    lm_forward,
    load_actor_and_reference,
)


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


@dataclass
class ActorCritic(ActorWithReference):
    """The actor, the frozen reference and the critic, with the forward passes GAE needs."""

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
) -> ActorCritic:
    """Roles from an in-memory actor. Without ``reference``: a frozen copy, or none for a LoRA actor.

    Without ``critic`` (and no shared backbone): a copy of the actor's body with a fresh value head.
    """
    is_lora = hasattr(actor, "disable_adapter")
    if reference is None and not is_lora:
        reference = copy.deepcopy(actor)
    if shared_backbone:
        return ActorCritic(actor, tokenizer, shared=PolicyWithValue(actor), reference=reference)
    return ActorCritic(
        actor, tokenizer, critic=critic or ValueModel.from_causal_lm(actor), reference=reference
    )


def critic_source(critic_from: str, sft_model: str, reward_model: str) -> str:
    """Where the critic's body comes from: ``auto`` = the reward model if given, else the SFT model."""
    if critic_from == "auto":
        return reward_model or sft_model
    if critic_from == "sft":
        return sft_model
    if critic_from == "rm":
        if not reward_model:
            from chatglm_rlhf.errors import ConfigError

            raise ConfigError("critic_from=rm needs reward_model=...")
        return reward_model
    return critic_from


def load_actor_critic(cfg, device: str) -> ActorCritic:
    """Actor, reference and critic for an online config whose estimator needs a critic, on ``device``.

    Trainable weights stay fp32 (autocast supplies bf16 on GPU); the frozen reference loads in the
    device's default dtype (bf16 on CUDA). With LoRA the critic's body gets adapters too.
    """
    from chatglm_rlhf.models.loading import LoraSettings, _enable_checkpointing

    trust = cfg.trust_remote_code
    roles = load_actor_and_reference(cfg, device)
    actor, tok, reference = roles.actor, roles.tokenizer, roles.reference
    lora = LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha) if cfg.lora_r > 0 else None
    if cfg.shared_backbone:
        return ActorCritic(actor, tok, shared=PolicyWithValue(actor).to(device), reference=reference)
    critic = ValueModel.from_pretrained(
        critic_source(cfg.critic_from, cfg.model, cfg.reward_model), device, trust_remote_code=trust
    )
    if cfg.gradient_checkpointing:
        _enable_checkpointing(critic.backbone)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        body = LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules="all-linear")
        critic.backbone = get_peft_model(critic.backbone, body)
    return ActorCritic(actor, tok, critic=critic, reference=reference)
