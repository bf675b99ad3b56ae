"""Memory planner: GiB per GPU for each training role and strategy, before renting a cluster.

``chatglm-rlhf plan model=chatglm3-6b stage=ppo gpus=8`` prints, for each strategy (DDP, FSDP, DeepSpeed
ZeRO-2, ZeRO-3), a table of the memory each role (actor, critic, reference, reward) needs on one GPU,
split into weights, gradients, optimizer states, activations and KV cache. It is arithmetic on the
model's shape only (no torch, no network); every formula is below and in ``docs/scaling.md``.

Notation: ``N`` GPUs (data-parallel world size), ``h`` hidden size, ``L`` layers, ``q = heads * head_dim``,
``kv = kv_heads * head_dim``, ``f`` MLP intermediate size, ``V`` vocabulary, ``r`` LoRA rank, ``b_c``
bytes of the compute dtype (2 for bf16/fp16, 4 for fp32), ``b_w`` bytes of a trainable model's weights.

**Parameters** (a GLM/Llama-style decoder with a gated MLP):
``layer = 2*h*q + 2*h*kv + 3*h*f + bias(q + 2*kv) + norms*h``; ``P = L*layer + V*h (embedding)
+ V*h (output layer, 0 if tied) + h``. A critic or reward model is the body without the output layer plus
a scalar head (``h``). LoRA on every linear layer of a block (what ``LoraSettings`` targets):
``T = L * r * [(h+q) + 2*(h+kv) + (q+h) + 2*(h+f) + (f+h)]`` trainable parameters.

**Weights, gradients, optimizer** per trainable parameter (AdamW):

* ``param_dtype=fp32`` (what the trainers do under DDP and FSDP: fp32 weights, bf16 autocast):
  weights 4 B, gradients 4 B, optimizer 8 B (fp32 m and v).
* ``param_dtype=bf16`` (DeepSpeed bf16: the model is cast to bf16): weights 2 B, gradients 2 B,
  optimizer 12 B (fp32 master copy + m + v). Either way 16 B per trainable parameter.
* The frozen part of a LoRA model costs ``b_w`` per parameter (weights only).
* Frozen roles (reference, reward) are loaded in the compute dtype: ``b_c`` per parameter.

**Sharding** over ``N`` GPUs: ``ddp`` none; ``zero2`` gradients and optimizer states ``/N``; ``zero3`` and
``fsdp`` (FULL_SHARD) weights, gradients and optimizer states ``/N``, plus a gather buffer of the
parameters held whole while they compute: the root unit (embedding + output layer) and two transformer
layers (the running one and the prefetched one), ``(V*h + head + 2*layer) * b_c``. Frozen roles are
replicated on every GPU (the PPO trainer prepares only the trainable models); ``shard_frozen=true``
shows what sharding them as well (ZeRO-3 inference style) would give.

**Activations** of a training forward with ``n`` sequences of ``s`` tokens (``t = n*s``), stored for the
backward pass (an approximation of Korthikanti et al. 2022 for pre-norm blocks with a gated MLP and
flash/SDPA attention, which stores no ``s x s`` scores; no dropout):
``per_layer = b_c * t * (4*h + 2*q + 2*kv + 4*f)`` (two norm inputs and outputs, q, k, v, attention
output; gate, up, act(gate), act(gate)*up); ``attn_scores=true`` adds ``b_c * n * heads * s^2``
(eager attention). Without gradient checkpointing ``L * per_layer``; with it ``L * b_c * t * h`` (each
block's input) ``+ per_layer`` (one block recomputed at a time). Causal-LM roles add the logits,
``n * s_logits * V * (b_c + 8)`` (logits, their fp32 copy, and the fp32 log-softmax/gradient);
``s_logits`` is ``s`` for SFT/DPO and ``gen_len`` for the PPO actor (only response positions get logits).
``n`` is ``micro_batch`` for SFT and PPO, ``2*micro_batch`` for RM and DPO (chosen + rejected).
Frozen roles run without grad: one block's working set ``per_layer`` (+ logits for the reference), over
``gen_batch`` rollout sequences in PPO and ``2*micro_batch`` in DPO ``reference=on_the_fly``.

**KV cache** (PPO generation by the actor): ``2 * L * kv * (prompt_len + gen_len) * gen_batch * b_c``.

**vLLM rollouts** (``rollout_backend=vllm``): the actor's KV cache above is replaced by an engine per GPU
holding ``vllm_gpu_memory_utilization * gpu_mem_gib``: its full (merged, unsharded) weights ``P * b_c``
and a KV-cache pool of the rest. With ``vllm_sleep`` it holds that only while generating (asleep, it keeps
nothing on the GPU), so ``rollout`` is the larger of the engine's share and the frozen roles' forwards;
without, the share adds to both ``rollout`` and ``train``.

**Peak per GPU** ``= static + max(train, rollout) + overhead_gib``, where ``static`` is the sum of weights,
gradients and optimizer states of every role (gradients counted as resident), ``train`` the activations
of the trainable roles (the PPO actor and critic backward together), and ``rollout`` the KV cache plus the
frozen roles' working sets (they run in a different phase than the backward pass). ``overhead_gib``
covers the CUDA context, communication buffers and allocator fragmentation. Estimates are for planning
(expect +-20%); the activation term is the least exact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chatglm_rlhf.config import field_
from chatglm_rlhf.errors import ConfigError, UserError

GIB = 1024**3
STRATEGIES = ("ddp", "fsdp", "zero2", "zero3")
STAGES = ("sft", "rm", "dpo", "ppo")
ROLES = ("actor", "critic", "reference", "reward")
COMPONENTS = ("weights", "grads", "optimizer", "activations", "kv_cache")
_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class ModelShape:
    """The numbers that decide a decoder's memory; ``head_dim`` defaults to ``hidden // heads``."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    intermediate: int
    head_dim: int = 0
    tie_embeddings: bool = False
    qkv_bias: bool = False
    norms_per_layer: int = 2

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.hd

    def layer_params(self) -> int:
        h, q, kv, f = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        bias = q + 2 * kv if self.qkv_bias else 0
        return 2 * h * q + 2 * h * kv + 3 * h * f + bias + self.norms_per_layer * h

    def embed_params(self) -> int:
        return self.vocab * self.hidden

    def head_params(self) -> int:
        return 0 if self.tie_embeddings else self.vocab * self.hidden

    def params(self) -> int:
        """All parameters of the causal LM."""
        return self.layers * self.layer_params() + self.embed_params() + self.head_params() + self.hidden

    def body_params(self) -> int:
        """A critic / reward model: the body without the output layer, plus a scalar head (``h``)."""
        return self.layers * self.layer_params() + self.embed_params() + self.hidden + self.hidden

    def lora_params(self, r: int) -> int:
        h, q, kv, f = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        return self.layers * r * ((h + q) + 2 * (h + kv) + (q + h) + 2 * (h + f) + (f + h))


# Shapes as published in each checkpoint's config.json (written here so that planning needs no network;
# check a checkpoint you have with model=PATH). glm-32b stands in for the paper's (unreleased) 32B
# ChatGLM with the open GLM-4-32B-0414 shape.
PRESETS: dict[str, ModelShape] = {
    "chatglm3-6b": ModelShape("chatglm3-6b", 4096, 28, 32, 2, 65024, 13696, 128, qkv_bias=True),
    "glm-4-9b": ModelShape("glm-4-9b", 4096, 40, 32, 2, 151552, 13696, 128, qkv_bias=True),
    "llama-3-8b": ModelShape("llama-3-8b", 4096, 32, 32, 8, 128256, 14336, 128),
    "qwen2-7b": ModelShape("qwen2-7b", 3584, 28, 28, 4, 152064, 18944, 128, qkv_bias=True),
    "glm-32b": ModelShape("glm-32b", 6144, 61, 48, 2, 151552, 23040, 128, qkv_bias=True, norms_per_layer=4),
}
ALIASES = {"glm-4-9b-chat": "glm-4-9b", "chatglm3": "chatglm3-6b", "glm-4-32b": "glm-32b"}


@dataclass
class PlanConfig:
    model: str = field_(
        "chatglm3-6b", help=f"a preset ({', '.join(PRESETS)}) or a local config.json / folder"
    )
    stage: str = field_("ppo", help="sft | rm | dpo | ppo")
    gpus: int = field_(8, help="GPUs in the data-parallel group (all nodes together)")
    strategy: str = field_("all", help="ddp | fsdp | zero2 | zero3 | all")
    dtype: str = field_(
        "bf16", help="compute dtype (activations, KV cache, frozen roles): bf16 | fp16 | fp32"
    )
    param_dtype: str = field_(
        "auto", help="trainable weights: auto (fp32 for ddp/fsdp, bf16 for zero2/zero3) | fp32 | bf16"
    )
    lora_r: int = field_(0, help="LoRA rank of the trained models (0 = full fine-tuning)")
    micro_batch: int = field_(1, help="sequences (sft, ppo) or pairs (rm, dpo) per forward per GPU")
    seq_len: int = field_(2048, help="sft/rm/dpo: tokens per sequence")
    prompt_len: int = field_(1024, help="ppo: prompt tokens")
    gen_len: int = field_(1024, help="ppo: generated tokens")
    gen_batch: int = field_(8, help="ppo: sequences per generate call per GPU (KV cache, rollout forwards)")
    gradient_checkpointing: bool = field_(False, help="store only each block's input, recompute the rest")
    attn_scores: bool = field_(False, help="count the s x s attention scores (eager attention)")
    shared_backbone: bool = field_(False, help="ppo: the critic is a value head on the actor (no 2nd model)")
    dpo_reference: str = field_("cached", help="dpo: cached (no reference in memory) | on_the_fly")
    shard_frozen: bool = field_(False, help="zero3/fsdp: shard the frozen roles too (the trainers do not)")
    rollout_backend: str = field_("hf", help="ppo: hf (generate on the actor) | vllm (an engine per GPU)")
    vllm_gpu_memory_utilization: float = field_(
        0.3, help="ppo, vllm: the engine's share of GPU memory (its weights + KV-cache pool)"
    )
    vllm_sleep: bool = field_(True, help="ppo, vllm: the engine frees its memory while training (sleep)")
    gpu_mem_gib: float = field_(80.0, help="memory of one GPU, for the fits / does not fit verdict")
    overhead_gib: float = field_(1.0, help="CUDA context, communication buffers, fragmentation")
    format: str = field_("table", help="table | json")

    def __post_init__(self) -> None:
        choices = {
            "stage": STAGES,
            "strategy": (*STRATEGIES, "all"),
            "dtype": tuple(_BYTES),
            "param_dtype": ("auto", "fp32", "bf16"),
            "dpo_reference": ("cached", "on_the_fly"),
            "format": ("table", "json"),
            "rollout_backend": ("hf", "vllm"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"plan: {key} must be one of {list(allowed)}, got {getattr(self, key)!r}")
        for key in ("gpus", "micro_batch", "seq_len", "prompt_len", "gen_len", "gen_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"plan: {key} must be >= 1, got {getattr(self, key)}")
        if self.lora_r < 0:
            raise ConfigError(f"plan: lora_r must be >= 0, got {self.lora_r}")


# --- model shapes from a name or a config.json --------------------------------------------------------


def _first(cfg: dict[str, Any], keys: tuple[str, ...], where: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    if default is None:
        raise UserError(f"{where}: none of the keys {', '.join(keys)} is present (needed for planning)")
    return default


def shape_from_config(cfg: dict[str, Any], name: str, where: str) -> ModelShape:
    """Read HF (Llama/Qwen/GLM) and ChatGLM-remote-code config keys; ``text_config`` for multimodal."""
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg["text_config"], **{k: v for k, v in cfg.items() if k == "model_type"}}
    hidden = int(_first(cfg, ("hidden_size", "n_embd", "d_model"), where))
    heads = int(_first(cfg, ("num_attention_heads", "n_head"), where))
    kv_default = cfg.get("multi_query_group_num") if cfg.get("multi_query_attention") else heads
    model_type = str(cfg.get("model_type", ""))
    glm_like = model_type.startswith(("chatglm", "glm"))
    return ModelShape(
        name=name,
        hidden=hidden,
        layers=int(_first(cfg, ("num_hidden_layers", "num_layers", "n_layer"), where)),
        heads=heads,
        kv_heads=int(_first(cfg, ("num_key_value_heads",), where, kv_default)),
        vocab=int(_first(cfg, ("padded_vocab_size", "vocab_size"), where)),
        intermediate=int(_first(cfg, ("intermediate_size", "ffn_hidden_size", "n_inner"), where, 4 * hidden)),
        head_dim=int(_first(cfg, ("head_dim", "kv_channels"), where, hidden // heads)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", not glm_like)),
        qkv_bias=bool(cfg.get("attention_bias", cfg.get("add_qkv_bias", model_type == "qwen2"))),
    )


def resolve_model(spec: str) -> ModelShape:
    """A preset name, a folder holding config.json, or a config.json file."""
    key = ALIASES.get(spec.lower(), spec.lower())
    if key in PRESETS:
        return PRESETS[key]
    path = Path(spec)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise UserError(
            f"plan: model={spec!r} is neither a preset ({', '.join(PRESETS)}) nor a local config.json / "
            "folder with one (hub ids are not fetched: download the config.json first)"
        )
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    return shape_from_config(cfg, path.parent.name or str(path), str(path))


# --- the formulas --------------------------------------------------------------------------------------


@dataclass
class Role:
    """What one role is: its parameter count, how it is trained, and what its forward looks like."""

    name: str
    params: int  # parameters it holds on the GPU (0: shares another role's weights)
    trainable: int  # trainable parameters (0: frozen)
    causal: bool  # has an LM head whose logits are materialised
    seqs: int  # sequences per forward
    seq_len: int
    logits_len: int
    kv_cache: bool = False
    note: str = ""


def per_layer_activation_bytes(m: ModelShape, seqs: int, s: int, b_c: int, scores: bool) -> int:
    per = b_c * seqs * s * (4 * m.hidden + 2 * m.q_dim + 2 * m.kv_dim + 4 * m.intermediate)
    return per + (b_c * seqs * m.heads * s * s if scores else 0)


def activation_bytes(m: ModelShape, role: Role, b_c: int, cfg: PlanConfig) -> int:
    per = per_layer_activation_bytes(m, role.seqs, role.seq_len, b_c, cfg.attn_scores)
    logits = role.seqs * role.logits_len * m.vocab * (b_c + 8) if role.causal else 0
    if not role.trainable:  # no grad: one block's working set at a time
        return per + logits
    if cfg.gradient_checkpointing:
        return m.layers * b_c * role.seqs * role.seq_len * m.hidden + per + logits
    return m.layers * per + logits


def kv_cache_bytes(m: ModelShape, cfg: PlanConfig, b_c: int) -> int:
    return 2 * m.layers * m.kv_dim * (cfg.prompt_len + cfg.gen_len) * cfg.gen_batch * b_c


def gather_buffer_bytes(m: ModelShape, causal: bool, b_c: int) -> int:
    head = m.head_params() if causal else m.hidden
    return (m.embed_params() + head + 2 * m.layer_params()) * b_c


def resolved_param_dtype(cfg: PlanConfig, strategy: str) -> str:
    if cfg.dtype == "fp32":
        return "fp32"
    if cfg.param_dtype != "auto":
        return cfg.param_dtype
    return "bf16" if strategy in ("zero2", "zero3") else "fp32"


def roles_for(cfg: PlanConfig, m: ModelShape) -> list[Role]:
    lora = cfg.lora_r > 0
    P, body = m.params(), m.body_params()
    adapters = m.lora_params(cfg.lora_r) if lora else 0
    t_lm = adapters or P
    t_body = adapters + m.hidden if lora else body  # peft trains the new score head fully
    P_lm, P_body = P + adapters, body + adapters  # what a LoRA model holds: base + adapters
    mb, s = cfg.micro_batch, cfg.seq_len
    if cfg.stage == "sft":
        return [Role("actor", P_lm, t_lm, True, mb, s, s)]
    if cfg.stage == "rm":
        return [Role("reward", P_body, t_body, False, 2 * mb, s, 0, note="trained")]
    if cfg.stage == "dpo":
        actor = Role("actor", P_lm, t_lm, True, 2 * mb, s, s)
        if cfg.dpo_reference == "cached":
            ref = Role("reference", 0, 0, True, 0, s, s, note="log-probs cached before training")
        else:
            ref = Role("reference", 0 if lora else P, 0, True, 2 * mb, s, s)
            ref.note = "the LoRA base with adapters off" if lora else "frozen copy"
        return [actor, ref]
    seq = cfg.prompt_len + cfg.gen_len
    actor = Role("actor", P_lm, t_lm, True, mb, seq, cfg.gen_len, kv_cache=True)
    if cfg.shared_backbone:
        critic = Role("critic", 0, m.hidden, False, 0, seq, 0, note="value head on the actor")
    else:
        critic = Role("critic", P_body, t_body, False, mb, seq, 0)
    ref = Role("reference", 0 if lora else P, 0, True, cfg.gen_batch, seq, cfg.gen_len)
    ref.note = "the LoRA base with adapters off" if lora else ""
    reward = Role("reward", body, 0, False, cfg.gen_batch, seq, 0)
    return [actor, critic, ref, reward]


def role_bytes(m: ModelShape, role: Role, cfg: PlanConfig, strategy: str) -> dict[str, float]:
    """Bytes on one GPU for one role under ``strategy``, by component."""
    b_c = _BYTES[cfg.dtype]
    n = cfg.gpus
    out = dict.fromkeys(COMPONENTS, 0.0)
    sharded = strategy in ("zero3", "fsdp")
    if role.trainable:
        b_w = _BYTES[resolved_param_dtype(cfg, strategy)]
        b_o = 8 + (4 if b_w == 2 else 0)  # m + v (+ fp32 master when the weights are 16-bit)
        weights = (role.params or role.trainable) * b_w  # a LoRA model's frozen base included
        out["weights"] = weights / n if sharded else weights
        out["grads"] = role.trainable * b_w / (1 if strategy == "ddp" else n)
        out["optimizer"] = role.trainable * b_o / (1 if strategy == "ddp" else n)
        if sharded and role.params:
            out["weights"] += gather_buffer_bytes(m, role.causal, b_c)
    elif role.params:
        weights = role.params * b_c
        if sharded and cfg.shard_frozen:
            out["weights"] = weights / n + gather_buffer_bytes(m, role.causal, b_c)
        else:
            out["weights"] = weights
    if role.seqs:
        out["activations"] = activation_bytes(m, role, b_c, cfg)
    if role.kv_cache:
        out["kv_cache"] = kv_cache_bytes(m, cfg, b_c)
    return out


@dataclass
class StrategyPlan:
    strategy: str
    param_dtype: str
    roles: dict[str, dict[str, float]]  # GiB per component
    static_gib: float
    train_gib: float
    rollout_gib: float
    peak_gib: float
    fits: bool


def vllm_engine_gib(cfg: PlanConfig, m: ModelShape) -> dict[str, float]:
    """The engine's GiB on one GPU: full weights, and the KV pool of what its share leaves."""
    lora = m.lora_params(cfg.lora_r) if cfg.lora_r else 0
    share = cfg.vllm_gpu_memory_utilization * cfg.gpu_mem_gib
    weights = (m.params() + lora) * _BYTES[cfg.dtype] / GIB
    if share <= weights:
        raise UserError(
            f"plan: vllm_gpu_memory_utilization {cfg.vllm_gpu_memory_utilization:g} x {cfg.gpu_mem_gib:g} GiB "
            f"= {share:.1f} GiB does not hold the engine's weights ({weights:.1f} GiB): raise it"
        )
    return {**dict.fromkeys(COMPONENTS, 0.0), "weights": weights, "kv_cache": share - weights}


def plan_strategy(cfg: PlanConfig, m: ModelShape, strategy: str) -> StrategyPlan:
    roles = roles_for(cfg, m)
    table = {r.name: {k: v / GIB for k, v in role_bytes(m, r, cfg, strategy).items()} for r in roles}
    static = sum(t["weights"] + t["grads"] + t["optimizer"] for t in table.values())
    train = sum(table[r.name]["activations"] for r in roles if r.trainable)
    rollout = sum(table[r.name]["activations"] for r in roles if not r.trainable)
    rollout += sum(t["kv_cache"] for t in table.values())
    if cfg.stage == "ppo" and cfg.rollout_backend == "vllm":
        engine = vllm_engine_gib(cfg, m)
        share = engine["weights"] + engine["kv_cache"]
        rollout -= table["actor"]["kv_cache"]  # no HF generate on the actor
        table["actor"]["kv_cache"] = 0.0
        if cfg.vllm_sleep:  # generating (engine awake), then the frozen roles' forwards (asleep)
            rollout = max(rollout, share)
        else:
            rollout, train = rollout + share, train + share
        table["vllm"] = engine
    peak = static + max(train, rollout) + cfg.overhead_gib
    for t in table.values():
        t["total"] = sum(t[c] for c in COMPONENTS)
    return StrategyPlan(
        strategy, resolved_param_dtype(cfg, strategy), table, static, train, rollout, peak,
        peak <= cfg.gpu_mem_gib,
    )  # fmt: skip


def plan(cfg: PlanConfig) -> dict[str, Any]:
    """The shape, the roles and a :class:`StrategyPlan` per strategy (GiB per GPU)."""
    m = resolve_model(cfg.model)
    strategies = STRATEGIES if cfg.strategy == "all" else (cfg.strategy,)
    roles = roles_for(cfg, m)
    return {
        "config": asdict(cfg),
        "model": {**asdict(m), "params": m.params(), "body_params": m.body_params()},
        "roles": [asdict(r) for r in roles],
        "strategies": [plan_strategy(cfg, m, s) for s in strategies],
    }


# --- output --------------------------------------------------------------------------------------------


def _b(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"


def format_plan(result: dict[str, Any]) -> str:
    cfg, m = result["config"], result["model"]
    lines = [
        f"model {m['name']}: {_b(m['params'])} parameters (body {_b(m['body_params'])}); "
        f"h={m['hidden']} L={m['layers']} heads={m['heads']} kv_heads={m['kv_heads']} V={m['vocab']} "
        f"f={m['intermediate']}",
        _setting_line(cfg),
    ]
    for r in result["roles"]:
        if r["params"] or r["trainable"] or r["note"]:
            what = f"{_b(r['trainable'])} trainable" if r["trainable"] else "frozen"
            lines.append(
                f"  {r['name']}: {_b(r['params'])} params, {what}{' - ' + r['note'] if r['note'] else ''}"
            )
    header = f"  {'role':<10}" + "".join(f"{c:>12}" for c in (*COMPONENTS, "total"))
    for sp in result["strategies"]:
        lines += ["", f"{sp.strategy} (trainable weights {sp.param_dtype}), GiB per GPU:", header]
        for name, t in sp.roles.items():
            lines.append(f"  {name:<10}" + "".join(f"{t[c]:>12.2f}" for c in (*COMPONENTS, "total")))
        verdict = "fits" if sp.fits else "does NOT fit"
        lines.append(
            f"  peak = static {sp.static_gib:.1f} + max(train {sp.train_gib:.1f}, rollout {sp.rollout_gib:.1f})"
            f" + overhead {cfg['overhead_gib']:.1f} = {sp.peak_gib:.1f} GiB: {verdict} in {cfg['gpu_mem_gib']:g} GiB"
        )
    if len(result["strategies"]) > 1:
        lines += ["", "summary (peak GiB per GPU): " + ", ".join(
            f"{sp.strategy} {sp.peak_gib:.1f}{'' if sp.fits else ' (too big)'}" for sp in result["strategies"]
        )]  # fmt: skip
    return "\n".join(lines)


def _setting_line(cfg: dict[str, Any]) -> str:
    if cfg["stage"] == "ppo":
        seq = f"prompt {cfg['prompt_len']} + gen {cfg['gen_len']} tokens, gen_batch {cfg['gen_batch']}"
    else:
        seq = f"seq_len {cfg['seq_len']}"
    return (
        f"stage {cfg['stage']}, {cfg['gpus']} GPUs, dtype {cfg['dtype']}, micro_batch {cfg['micro_batch']}, "
        f"{seq}, lora_r {cfg['lora_r']}, gradient_checkpointing {cfg['gradient_checkpointing']}"
    )


def plan_json(result: dict[str, Any]) -> str:
    out = dict(result)
    out["strategies"] = [asdict(s) for s in result["strategies"]]
    return json.dumps(out, indent=2)
