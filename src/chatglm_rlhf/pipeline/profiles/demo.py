"""The embedded default: the whole pipeline on the offline demo world, with tiny local models.

    world     prompts and mixed-quality SFT demonstrations (the task writes data/)
    base      a byte-level BPE tokenizer trained on the world's text + a tiny GLM model
    sft       supervised fine-tuning on the demonstrations
    sft_eval  gold score of SFT samples on held-out prompts
    collect   k SFT samples per prompt, compared pairwise by simulated annotators
    filter    post-filtering (ties, cycles, spammers, length balancing), checked against gold
    rm        the reward model, initialised from the SFT model
    ppo, dpo  the policies (policy/registry.py; `pg` on request), then each ablation's twin stages
    evaluate  every policy vs the SFT model on held-out prompts, gold judge
    ceiling   best-of-n of SFT samples picked by gold vs by the RM: the room the RM leaves

Profiles: ``default`` and ``smoke`` (the same stages on a few dozen prompts, < 3 minutes on 2 cores).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from chatglm_rlhf.config import POSITIVE, field_
from chatglm_rlhf.evaluate.evaluate import EvalGeneration
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.pipeline.context import RunContext
from chatglm_rlhf.pipeline.profiles.base import (
    ABLATIONS_HELP,
    EnsembleSettings,
    PipelineConfig,
    Profile,
    RoundSettings,
    StageBuilder,
    StressSettings,
)
from chatglm_rlhf.pipeline.stages import data, evaluate, models, overopt, reward
from chatglm_rlhf.policy.dpo.config import DPOConfig
from chatglm_rlhf.policy.online.config import PGConfig, PPOConfig
from chatglm_rlhf.reward.filtering import FilterConfig
from chatglm_rlhf.reward.rm_config import RMConfig

SUPPORTED_ABLATIONS = (
    "length_balance",
    "length_heads",
    "baseline",
    "ptx",
    "ptx_stress",
    "gold_reward",
    "critic_free",
    "pessimistic",
)


@dataclass
class WorldSettings:
    seed: int = field_(0, help="seed of the world, the data and the models")
    n_sft: int = field_(3000, help="SFT demonstrations")
    n_eval: int = field_(200, help="held-out prompts for evaluation")
    n_pref: int = field_(800, help="prompts whose SFT samples are annotated")
    n_rl: int = field_(400, help="prompts for PPO / DPO")
    n_dev: int = field_(200, help="dev prompts (held out from training and from evaluation): for tuning")
    flaw_rate: float = field_(
        0.65, help="share of RL-family demonstrations with the family's systematic flaw"
    )
    corpus: int = field_(4000, help="texts the tokenizer is trained on")


@dataclass
class TinyModelSettings:
    vocab_size: int = field_(1024, help="BPE vocabulary size")
    hidden_size: int = field_(128, help="hidden size of the tiny GLM")
    num_layers: int = field_(4, help="transformer layers")
    num_heads: int = field_(4, help="attention heads")
    max_position_embeddings: int = field_(256, help="longest sequence")
    architecture: Literal["glm", "llama"] = field_(
        "glm", help="glm, or llama (what generation_backend=vllm needs, with hidden_size / num_heads >= 32)"
    )

    def unused_fields(self) -> tuple[str, ...]:
        return ("architecture",) if self.architecture == "glm" else ()  # runs from before the field


@dataclass
class DemoSFTSettings:
    # One word per meaning: optimizer steps are max_steps in every epoch trainer (sft, rm, dpo); the old
    # `steps` still works, and finished runs keep their fingerprints (the field's old name in them).
    ALIASES: ClassVar[dict[str, str]] = {"steps": "max_steps"}
    FINGERPRINT_NAMES: ClassVar[dict[str, str]] = {"max_steps": "steps"}

    max_steps: int = field_(600, help="optimizer steps")
    batch_size: int = field_(32, help="sequences per step")
    lr: float = field_(2e-3, help="peak learning rate (tiny models like it high)")
    max_length: int = field_(192, help="max tokens per sequence")


@dataclass
class CollectSettings:
    k: int = field_(3, help="SFT samples per prompt (3: all three pairs, so cycles can appear)")
    n_annotators: int = field_(6, help="simulated annotators")
    n_spammers: int = field_(1, help="of which answer at random")
    overlap: int = field_(3, help="annotators per pair")
    noise: float = field_(0.1, help="std of each annotator's judgement noise")
    length_bias: float = field_(0.15, help="annotators' preference for longer answers (per 10 words)")
    tie_margin: float = field_(0.05, help="utility difference below which annotators say tie")
    prompts: int = field_(
        0,
        added=True,
        help="annotate only the first N preference prompts (0 = all): a smaller first-round budget",
    )


def _sampling() -> GenerationSettings:
    return GenerationSettings(max_new_tokens=48, temperature=1.0, batch_size=64)


def _rm_defaults() -> RMConfig:
    # length_coef (only the length_heads twin uses it): chosen on the RM's held-out split of one seed's
    # unbalanced pairs, gold accuracy vs |corr(r, length)| on gold ties: 0.03 -> 0.772 / 0.585, 0.1 ->
    # 0.772 / 0.439, 0.3 -> 0.741 / 0.388, 1.0 (ODIN's) -> 0.665 / 0.138; no head 0.778 / 0.713
    # (scripts/length_heads_sweep.py, docs/results.md).
    return RMConfig(
        epochs=2.0, batch_size=16, lr=5e-4, max_length=192, reg_coef=1e-3, cpu=True, log_every=20,
        eval_buckets=[2, 5, 10, 20], length_coef=0.1,
    )  # fmt: skip


def _ppo_defaults() -> PPOConfig:
    # The baseline is the mean score of 8 sampled reference answers, not the paper's one greedy answer:
    # the SFT model's answers to one prompt differ far more than prompts do here (between-prompt share of
    # the RM score ~0.3, scripts/baseline_variance.py), so one answer's score is a noisy level that added
    # spread instead of removing it (docs/results.md, "The reference baseline's estimate").
    return PPOConfig(
        steps=40, rollout_batch_size=32, mini_batch_size=16, update_epochs=2, lr=5e-5, critic_lr=1e-3,
        kl_coef=0.05, ptx_coef=0.1, max_prompt_tokens=128, max_length=192, cpu=True, generation=_sampling(),
        baseline_k=8, baseline_greedy=False,
    )  # fmt: skip


def _pg_defaults() -> PGConfig:
    # PPO's recipe without the critic: 8 prompts x k = 4 is PPO's 32 responses per iteration, and 2 epochs
    # of 2 minibatches its 4 updates per iteration.
    return PGConfig(
        steps=40, rollout_batch_size=8, k=4, mini_batch_size=16, update_epochs=2, lr=5e-5, kl_coef=0.05,
        ptx_coef=0.1, max_prompt_tokens=128, max_length=192, cpu=True, generation=_sampling(),
    )  # fmt: skip


def _dpo_defaults() -> DPOConfig:
    return DPOConfig(
        k=8, beta=0.1, lr=5e-4, epochs=3.0, nll_weight=1.0, batch_size=8, max_length=192, cpu=True,
        generation=_sampling(), log_every=20,
    )  # fmt: skip


@dataclass
class DemoConfig(PipelineConfig):
    profile: str = field_("default", help="smoke | default: the base settings that the keys below override")
    # The task's settings: one section name in every profile (it was `world` here: still accepted).
    ALIASES: ClassVar[dict[str, str]] = {"world": "task"}

    task: WorldSettings = field(default_factory=WorldSettings)
    model: TinyModelSettings = field(default_factory=TinyModelSettings)
    sft: DemoSFTSettings = field(default_factory=DemoSFTSettings)
    collect: CollectSettings = field(default_factory=CollectSettings)
    generation: GenerationSettings = field(default_factory=_sampling)
    # downsample: what every demo figure in docs/results.md was measured with (the library default is reweight)
    filter: FilterConfig = field(
        default_factory=lambda: FilterConfig(bucket_edges=[2, 5, 10, 20], balance="downsample")
    )
    rm: RMConfig = field(default_factory=_rm_defaults)
    ppo: PPOConfig = field(default_factory=_ppo_defaults)
    dpo: DPOConfig = field(default_factory=_dpo_defaults)
    pg: PGConfig = field(default_factory=_pg_defaults)
    eval: EvalGeneration = field(
        default_factory=lambda: EvalGeneration(max_new_tokens=48, greedy=True, batch_size=64)
    )
    ablations: list[str] = field_(["length_balance", "baseline", "ptx", "gold_reward"], help=ABLATIONS_HELP)
    device: Literal["auto", "cpu", "cuda"] = field_(
        "cpu",
        help="cpu: the demo's tiny models train faster on the CPU than a GPU launches them (auto | cuda)",
    )
    ceiling_n: int = field_(
        8, help="SFT samples per held-out prompt for the best-of-n ceiling (gold vs RM pick); 0 = skip"
    )
    ceiling_prompts: Literal["eval_prompts", "dev_prompts"] = field_(
        "eval_prompts", help="the ceiling's prompts: dev_prompts while tuning the world or the recipe"
    )
    eval_prompts: Literal["eval_prompts", "dev_prompts"] = field_(
        "eval_prompts", help="the evaluation's prompts: dev_prompts while tuning (never tune on eval_prompts)"
    )
    probe: bool = field_(
        True, help="the capability probe (held-out knowledge prompts) for SFT and every policy"
    )
    # 16x the learning rate, the same steps: chosen on seed 0's dev prompts and the probe's dev items
    # (scripts/ptx_stress_sweep.py; without ptx / with ptx, dev probe drop from SFT's 0.147): 4x1 0.000 /
    # -0.118, 8x1 0.059 / -0.088, 8x2 0.059 / -0.088, 16x1 0.118 / -0.118 (the only clear drop: 4 of 34 items).
    # Held-out items, 3 seeds (scripts/ptx_stress_seeds.py): drop 0.115 +- 0.025 without ptx, -0.008 +- 0.061 with.
    ptx_stress: StressSettings = field(default_factory=lambda: StressSettings(lr_scale=16.0))
    rounds: int = field_(
        1, added=True, check=POSITIVE,
        help="feedback rounds: each after the first annotates the current policy's answers (round.budget "
        "comparisons), retrains the RM on every round's and continues PPO from the last round's policy",
    )  # fmt: skip
    round: RoundSettings = field(default_factory=RoundSettings)
    ensemble: EnsembleSettings = field(default_factory=EnsembleSettings)


class DemoStages(StageBuilder):
    def filter(self, name: str, balance: str | None = None):
        return self.stage(name, reward.filter_, name, "comparisons", self.cfg.filter, balance=balance)

    def rm(self, name: str, filtered: str, bootstrap: int | None = None, init: str = "sft", **changes):
        c = self.cfg
        cfg = dataclasses.replace(c.rm, **changes) if changes else c.rm
        member = {} if bootstrap is None else {"bootstrap": bootstrap}  # (a round's ensemble member)
        return self.stage(name, reward.rm, name, f"{filtered}/filtered.jsonl", cfg, self.ctx.models / init,
                          eval_fraction=0.15, seed=c.task.seed, progress=c.progress, **member)  # fmt: skip

    def gold_curve(self, policy: str, **kw):
        """``<policy>_gold_curve`` when PPO writes snapshots (``ppo.snapshot_every``; its twins inherit it)."""
        c = self.cfg
        if not c.ppo.snapshot_every:
            return []
        return [self.stage(f"{policy}_gold_curve", overopt.gold_curve, policy, c.eval, c.task.seed,
                           progress=c.progress, **kw)]  # fmt: skip

    def build(self):
        c, seed, progress = self.cfg, self.cfg.task.seed, self.cfg.progress
        # fmt: off
        stages = [
            self.stage("world", data.data, task=("settings",)),
            self.stage("base", models.base, c.model, c.task.corpus, seed),
            self.stage("sft", models.sft, c.sft, seed, progress),
            self.stage("sft_eval", data.sft_eval, c.generation, seed, progress, key="sft"),
            self.stage("collect", data.collect, c.collect.k, c.collect.overlap, c.generation, seed + 1, progress,
                       key="data", task=("collect",), **({"n_prompts": c.collect.prompts} if c.collect.prompts else {})),
            self.filter("filter"),
            self.rm("rm", "filter"),
            *self.policies(),
            # Before the ablations: a twin's changed setting (ensemble.lam) does not redo the main curve.
            *(self.gold_curve("ppo") if "ppo" in c.algorithms else []),
            *self.ablations(),
            *self.rounds(seed),
            self.stage("evaluate", evaluate.evaluate, self.evaluated(), c.eval, seed, progress, prompts=c.eval_prompts,
                       **self.versus()),
        ]
        if c.ceiling_n > 0:
            stages.append(self.stage("ceiling", evaluate.ceiling, c.ceiling_n, c.ppo.generation, c.eval,
                                     c.ppo.max_prompt_tokens, seed, prompts=c.ceiling_prompts))
        if c.probe:
            stages.append(self.stage("probe", evaluate.probe, ["sft", *self.evaluated()], c.eval.max_new_tokens))
        # fmt: on
        return stages


def _task(cfg: DemoConfig):
    from chatglm_rlhf.tasks.demo.task import DemoTask

    return DemoTask(cfg.task, cfg.collect)


def _build(ctx: RunContext):
    return DemoStages(ctx).build()


_SMOKE = {
    "task": {"n_sft": 600, "n_eval": 40, "n_pref": 60, "n_rl": 60, "corpus": 1500},
    "model": {"hidden_size": 64, "num_layers": 2},
    "sft": {"max_steps": 120, "batch_size": 16},
    "collect": {"n_annotators": 4, "overlap": 2},
    "rm": {"epochs": 1.0},
    "ppo": {"steps": 4, "rollout_batch_size": 16, "mini_batch_size": 8, "filter_k": 2},
    "dpo": {"k": 4, "epochs": 1.0},
    "pg": {"steps": 4, "rollout_batch_size": 4, "k": 4, "mini_batch_size": 8, "filter_k": 2},
    "ceiling_n": 2,
}

PROFILES = [
    Profile(
        name,
        "demo world: tiny models, gold judge, simulated annotators",
        DemoConfig,
        defaults,
        _build,
        _task,
        supported_ablations=SUPPORTED_ABLATIONS,
        out="out/demo",
        wiring_check=name == "smoke",
    )  # fmt: skip
    for name, defaults in (("default", {}), ("smoke", _SMOKE))
]
