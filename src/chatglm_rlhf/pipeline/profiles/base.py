"""What a profile declares, and what every profile shares.

A profile is a declaration: a config dataclass (extending :class:`PipelineConfig`), per-stage defaults
for its named variants (``smoke`` / ``default``, ``real`` / ``real-smoke``), the task it runs on, and
its stage list built from the stage library (:mod:`chatglm_rlhf.pipeline.stages`) by a
:class:`StageBuilder`. Ablations are declared once, in :data:`ABLATIONS`: the stages each adds and the
policies it evaluates; a profile says which it supports.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from chatglm_rlhf.config import NON_NEGATIVE, POSITIVE, field_
from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.models.generation import GenerationSettings, VLLMSettings
from chatglm_rlhf.pipeline.context import RunContext
from chatglm_rlhf.pipeline.fingerprint import canonical
from chatglm_rlhf.pipeline.runner import Stage
from chatglm_rlhf.pipeline.stages import policy as policy_stages
from chatglm_rlhf.policy.dpo.config import DPOConfig
from chatglm_rlhf.policy.online.config import PGConfig, PPOConfig
from chatglm_rlhf.reward.filtering import FilterConfig

ABLATIONS_HELP = (
    "the paper's ablations to run, each a twin of the main run with one setting changed: length_balance "
    "(filter + RM + PPO without length balancing), length_heads (beyond the paper: the same unbalanced pairs, an "
    "RM with ODIN's length head whose quality head alone is the reward, and PPO on it), baseline (PPO on the raw RM score instead of "
    "the reference baseline r - r_ref), ptx (PPO without the ptx loss), gold_reward (PPO on the gold judge's score: "
    "what a perfect RM would give; tasks with a gold judge), critic_free (the `pg` section with every "
    "registered critic-free estimator: grpo, dr_grpo, rloo, reinforce_pp, ref_baseline, remax, next to PPO), "
    "ptx_stress (a declared stress test: PPO at ptx_stress.lr_scale x its learning rate and steps_scale x its "
    "steps, with and without ptx, so that forgetting exists for ptx to prevent), pessimistic (beyond the paper: "
    "ensemble.members bootstrap RMs on the main run's filtered pairs and PPO on their mean - ensemble.lam x std, "
    "put on the RM's scale; with ppo.snapshot_every > 0 a proxy-vs-gold curve on the dev prompts; tasks with a "
    "gold judge)"
)


@dataclass
class PipelineConfig:
    """Fields every profile has; a profile's config extends it with its task's and models' settings."""

    profile: str = field_("default", help="the named variant whose defaults the keys below override")
    filter: FilterConfig = field(default_factory=FilterConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    pg: PGConfig = field(default_factory=PGConfig)
    algorithms: list[str] = field_(
        ["ppo", "dpo"], help="policy algorithms to train and evaluate (policy/registry.py: ppo, dpo, pg, ...)"
    )
    ablations: list[str] = field_([], help=ABLATIONS_HELP)
    dpo_prompts: int = field_(0, help="DPO: the first N PPO prompts are sampled k times (0 = all)")
    # 1 where a machine's cores are busy with other work: 2 OpenMP threads that spin-wait made HF
    # generation 10x slower there (6.5 vs 75 tokens/s); scripts/real_seeds.sh JOBS=2 pins 1 per seed.
    threads: int = field_(0, help="torch CPU threads for this run (0 = torch's default)")
    progress: bool = field_(True, help="progress bars")
    generation_backend: Literal["sections", "hf", "vllm", "auto"] = field_(
        "sections",
        help="the sampler of every stage (candidates, PPO rollouts, DPO pairs, evaluation, ceiling, probe): "
        "hf or vllm (with the `vllm` settings below); auto: vllm when it is installed, else hf; "
        "sections: each section's own generation.backend",
    )
    vllm: VLLMSettings = field_(VLLMSettings(), help="the vLLM engine when generation_backend=vllm")
    device: Literal["auto", "cpu", "cuda"] = field_(
        "auto",
        help="where every stage trains and evaluates: auto = CUDA when a GPU is present, else the CPU; each "
        "trainer's mixed_precision=auto then resolves per device (bf16 on a CUDA GPU that has it, none on CPU)",
    )
    trust_remote_code: bool = field_(
        False, help="allow model code from the checkpoints (ChatGLM3 needs it): every stage that loads one"
    )


@dataclass(frozen=True)
class Ablation:
    name: str
    stages: Callable[[StageBuilder], list[Stage]]
    policies: tuple[str, ...] | Callable[[], tuple[str, ...]]  # the models it trains that evaluate compares
    needs_gold: bool = False

    def policy_names(self) -> tuple[str, ...]:
        return self.policies() if callable(self.policies) else self.policies


@dataclass
class StressSettings:
    lr_scale: float = field_(4.0, help="ptx_stress: PPO's learning rate times this", check=POSITIVE)
    steps_scale: float = field_(1.0, help="ptx_stress: PPO's steps times this", check=POSITIVE)


@dataclass
class RoundSettings:
    """Feedback rounds after the first (``rounds=N``; pipeline/stages/rounds.py)."""

    budget: int = field_(
        1200, help="comparisons (labels) annotated in each round after the first", check=POSITIVE
    )
    select: Literal["random", "uncertainty"] = field_(
        "random", help="which answer pairs are annotated: random | uncertainty (an ensemble's least sure)"
    )
    uncertainty: Literal["entropy", "disagreement", "bald"] = field_(
        "disagreement", help="select=uncertainty's score: entropy of the mean preference | disagreement "
        "(std of the members' preferences) | bald (mutual information)",
    )  # fmt: skip
    members: int = field_(
        3, help="bootstrap reward models in the ensemble (select=uncertainty)", check=POSITIVE
    )
    k: int = field_(4, help="the current policy's answers per prompt", check=POSITIVE)
    prompts: Literal["pref_prompts", "rl_prompts"] = field_(
        "pref_prompts", help="the prompts a round answers"
    )
    per_prompt: int = field_(0, help="at most this many pairs from one prompt (0 = no cap)")
    ppo_steps: int = field_(0, help="PPO steps of each later round (0 = ppo.steps)")
    rm_init: Literal["sft", "previous"] = field_(
        "sft",
        help="a round's reward model starts from the SFT model (as round 1's) or the previous round's RM",
    )


@dataclass
class EnsembleSettings:
    """The ``pessimistic`` ablation's reward: ``mean − lam·std`` over bootstrap RMs (reward/ensemble.py)."""

    # lam 0.5: on seed 0's dev prompts, pairs of SFT's and PPO's own answers (its snapshots) to one prompt
    # are ordered as gold orders them by mean - lam x std 0.708 / 0.701 / 0.679 / 0.643 / 0.633 of the time
    # at lam 0 / 0.5 / 1 / 2 / 4 (the proxy RM: 0.675; scripts/ensemble_lam.py): the members agree most on
    # the answers PPO drifts to (their std falls 0.93 -> 0.65 along PPO), so a large lam mostly adds noise;
    # 0.5 is the largest lam within 0.01 of the mean alone. Seeds 1 and 2 as a check: 0.722 / 0.722 / 0.728 /
    # 0.683 and 0.815 / 0.846 / 0.833 / 0.771 at lam 0 / 0.5 / 1 / 2.
    members: int = field_(
        3, help="pessimistic: bootstrap reward models trained on the main run's filtered comparisons",
        check=POSITIVE,
    )  # fmt: skip
    lam: float = field_(
        0.5, check=NON_NEGATIVE,
        help="pessimistic: PPO's reward is the members' mean - lam x their std over members (0 = the mean "
        "alone: the control for having an ensemble)",
    )  # fmt: skip


# Bootstrap seeds of the pessimistic ensemble: 1000 * run seed + this + member, clear of a feedback
# round's members (1000 * seed + 10 * round + member), so the two ensembles never share a resample.
PESSIMISTIC_SEED_OFFSET = 900


def _pessimistic(b: StageBuilder) -> list[Stage]:
    """``ensemble.members`` bootstrap RMs on the main run's filtered pairs, then PPO's twin on their
    pessimistic reward, built when the stage runs (the members do not exist yet), put on the RM's scale,
    and its proxy-vs-gold curve."""
    st = getattr(b.cfg, "ensemble", None) or EnsembleSettings()
    if st.members < 2:
        raise ConfigError(
            f"ensemble.members: the pessimistic ablation needs >= 2 reward models, got {st.members} "
            "(one has no spread to penalise)"
        )
    seed = 1000 * getattr(getattr(b.cfg, "task", None), "seed", 0) + PESSIMISTIC_SEED_OFFSET
    members = [f"ens_{m}" for m in range(st.members)]
    return [*(b.rm(n, "filter", bootstrap=seed + m) for m, n in enumerate(members)),
            # match_scale: averaging members that disagree shrinks the reward's spread, and kl_coef prices
            # drift in reward units; on the RM's scale the twin differs in what it rewards, not how loudly.
            b.policy("ppo", "ppo_pess", ensemble=members, lam=st.lam, match_scale=True),
            *b.gold_curve("ppo_pess", ensemble=members, lam=st.lam)]  # fmt: skip


def _stress(b: StageBuilder) -> dict[str, Any]:
    """The stress twin's changes to the profile's PPO section."""
    st, ppo = getattr(b.cfg, "ptx_stress", None) or StressSettings(), b.policy_config("ppo")
    return {"lr": ppo.lr * st.lr_scale, "steps": max(1, round(ppo.steps * st.steps_scale))}


def critic_free() -> list[str]:
    """The registered advantage estimators that need no critic, in registration order."""
    from chatglm_rlhf.policy.online.estimators import ADV_ESTIMATORS

    return [name for name, e in ADV_ESTIMATORS.items() if not e.critic]


ABLATIONS: dict[str, Ablation] = {
    a.name: a
    for a in (
        Ablation("length_balance", lambda b: [
            b.filter("filter_nobalance", balance="none"), b.rm("rm_nobalance", "filter_nobalance"),
            b.policy("ppo", "ppo_nobalance", rm="rm_nobalance"),
        ], ("ppo_nobalance",)),
        # Beyond the paper: ODIN's two heads (length, and a quality head kept uncorrelated with it) on the
        # same unbalanced pairs as length_balance's twin: none / buckets / heads compare on one footing.
        Ablation("length_heads", lambda b: [
            b.filter("filter_nobalance", balance="none"), b.rm("rm_heads", "filter_nobalance", length_head=True),
            b.policy("ppo", "ppo_heads", rm="rm_heads"),
        ], ("ppo_heads",)),
        Ablation("baseline", lambda b: [
            # The raw RM score instead of r - r_ref, nothing else changed: the reward fed to GAE stays on
            # one scale both ways, so its spread compares (a normalised twin would not).
            b.policy("ppo", "ppo_nobaseline", reward_baseline=False),
        ], ("ppo_nobaseline",)),
        # A declared stress test, not the paper's setting: PPO pushed harder (ptx_stress.lr_scale x the
        # learning rate, steps_scale x the steps) with and without ptx, so that there is forgetting for
        # ptx to prevent. Its scales are chosen on the dev prompts and the probe's dev items.
        Ablation("ptx_stress", lambda b: [
            b.policy("ppo", "ppo_stress", **_stress(b), snapshot_every=0),
            b.policy("ppo", "ppo_stress_noptx", **_stress(b), ptx_coef=0.0, snapshot_every=0),
        ], ("ppo_stress", "ppo_stress_noptx")),
        # No snapshots for the twin: the over-optimisation curve is drawn for the main PPO only.
        Ablation("ptx", lambda b: [b.policy("ppo", "ppo_noptx", ptx_coef=0.0, snapshot_every=0)], ("ppo_noptx",)),
        # The same recipe with ground truth as the reward (the critic still starts from the RM), put on the
        # RM's scale so that kl_coef prices drift alike: the gap to `ppo` is what the RM's errors cost.
        Ablation("gold_reward", lambda b: [
            b.policy("ppo", "ppo_goldreward", scorer=b.ctx.task.gold_reward(), match_scale=True),
        ], ("ppo_goldreward",), needs_gold=True),
        # No value model: every registered critic-free estimator with the profile's `pg` settings, the
        # same responses per iteration as PPO (pg.rollout_batch_size * pg.k = ppo.rollout_batch_size).
        # Beyond the paper: PPO on an ensemble's pessimistic reward (mean - lam x std), the over-optimisation
        # guard an ensemble makes almost free; ensemble.lam=0 is the control (the ensemble's mean alone).
        Ablation("pessimistic", _pessimistic, ("ppo_pess",), needs_gold=True),
        Ablation("critic_free", lambda b: [b.policy("pg", f"pg_{e}", estimator=e) for e in critic_free()],
                 lambda: tuple(f"pg_{e}" for e in critic_free())),
    )
}  # fmt: skip


def check_choices(cfg: PipelineConfig, supported: tuple[str, ...], where: str) -> None:
    """Unknown ablations or algorithms are errors naming the key and the choices."""
    from chatglm_rlhf.policy.registry import ALGORITHMS

    unknown = sorted(set(cfg.ablations) - set(supported))
    if unknown:
        raise ConfigError(f"{where}: ablations: unknown {unknown} (choose from {', '.join(supported)})")
    bad = sorted(set(cfg.algorithms) - set(ALGORITHMS))
    if bad:
        raise ConfigError(f"{where}: algorithms: unknown {bad} (choose from {', '.join(sorted(ALGORITHMS))})")
    from chatglm_rlhf.policy.online.config import OnlineConfig
    from chatglm_rlhf.policy.online.estimators import get_estimator

    for name in ALGORITHMS:  # a registered estimator in every online section, before any stage runs
        section = getattr(cfg, name, None)
        if isinstance(section, OnlineConfig):
            get_estimator(section.estimator, f"{where}: {name}.estimator")


def apply_generation_backend(cfg: PipelineConfig) -> None:
    """``generation_backend=hf|vllm``: set it (and the vLLM settings) on every generation section of the
    run's config, so that config.json and the stages' fingerprints say which sampler each stage used."""
    if cfg.generation_backend == "auto":
        cfg.generation_backend = resolve_auto_backend()
    if cfg.generation_backend == "sections":
        return

    def visit(obj: Any) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, GenerationSettings):
                value.backend = cfg.generation_backend
                value.vllm = dataclasses.replace(cfg.vllm)
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                visit(value)

    visit(cfg)


def apply_device(cfg: PipelineConfig) -> None:
    """``device`` and ``trust_remote_code`` for the whole run: resolved once (auto -> cuda or cpu) and set
    on every trainer section (``cpu``; ``trust_remote_code``), so config.json and the stages' fingerprints
    say where each stage ran. A section's ``mixed_precision=auto`` resolves per device in its trainer
    (bf16 on a CUDA GPU that has it, none on CPU), as the standalone commands do."""
    import torch

    from chatglm_rlhf.utils.train_config import TrainerConfig

    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda, but torch sees no CUDA GPU (device=auto runs on the CPU instead)")
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if isinstance(section, TrainerConfig):
            section.cpu = cfg.device == "cpu"
            section.trust_remote_code = section.trust_remote_code or cfg.trust_remote_code


def resolve_auto_backend() -> Literal["hf", "vllm"]:
    """``generation_backend=auto``: vllm when the package is importable (found, not imported: importing
    vLLM takes seconds), else hf with a one-line notice."""
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    # A folder named vllm on sys.path (a test folder, a checkout) is a namespace package: no origin.
    if spec is not None and spec.origin not in (None, "namespace"):
        return "vllm"
    print("[generation] vLLM is not installed: generation_backend=auto uses hf (slower rollouts)")
    return "hf"


class StageBuilder:
    """Binds the stage library to one run: a profile overrides how its filter, RM and policy stages are
    called (which file, which init, which seed); ablations reuse those bindings."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx, self.cfg = ctx, ctx.cfg

    def stage(self, name: str, fn: Callable[..., dict[str, Any]], *args: Any, key: str | None = None,
              pause: Callable[[RunContext], str | None] | None = None, task: bool | tuple[str, ...] = False,
              settings: Any = None, **kw: Any) -> Stage:  # fmt: skip
        """``fn(ctx, *args, **kw)`` as a stage. Its settings (what a rerun compares) are the bound
        arguments, ``settings`` when the function hides them, and the task's settings with ``task``."""
        run = partial(fn, self.ctx, *args, **kw)
        # By parameter name, so that a cosmetic argument (progress) is left out wherever it is passed.
        params = dict(inspect.signature(fn).bind_partial(None, *args, **kw).arguments)
        params.pop(next(iter(params)))  # the context
        # A renamed function keeps the name runs were made with (``fingerprint_name``): no redo on upgrade.
        name_ = getattr(fn, "fingerprint_name", getattr(fn, "__name__", ""))
        bound = {**params, "stage_settings": settings, "function": name_}
        if task:  # True: all the task's settings; a tuple: those attributes (the demo's annotators)
            names = task if isinstance(task, tuple) else tuple(vars(self.ctx.task))
            bound["task"] = {k: getattr(self.ctx.task, k) for k in names
                             if dataclasses.is_dataclass(getattr(self.ctx.task, k, None))}  # fmt: skip
        return Stage(name, lambda _dir: run(), metrics_key=key, settings=canonical(bound),
                     pause=(lambda _dir: pause(self.ctx)) if pause else None)  # fmt: skip

    def filter(self, name: str, balance: str | None = None) -> Stage:
        raise NotImplementedError

    def rm(self, name: str, filtered: str, **changes: Any) -> Stage:
        """Train reward model ``name`` on ``filtered``'s output with the profile's RM settings, ``changes``
        applied (an ablation's: e.g. ``length_head=True``)."""
        raise NotImplementedError

    def gold_curve(self, policy: str, **kw: Any) -> list[Stage]:
        """``<policy>_gold_curve``: the policy's snapshots scored on the dev prompts by the proxy RM and the
        task's gold (``kw``: an ensemble whose reward it also reports); none in a profile without gold."""
        return []

    def policy_config(self, algorithm: str):
        """The algorithm's stage config: the profile's section of that name, else the class defaults."""
        from chatglm_rlhf.policy.registry import get

        section = getattr(self.cfg, algorithm, None)
        return section if section is not None else get(algorithm).config_class()()

    def policy(self, algorithm: str, name: str | None = None, **kw: Any) -> Stage:
        limit = self.cfg.dpo_prompts if algorithm == "dpo" else 0
        return self.stage(name or algorithm, policy_stages.policy, algorithm, name or algorithm,
                          self.policy_config(algorithm), prompt_limit=limit, progress=self.cfg.progress,
                          **kw)  # fmt: skip

    def policies(self) -> list[Stage]:
        return [self.policy(a) for a in self.cfg.algorithms]

    def ablations(self) -> list[Stage]:
        """The chosen ablations' stages; one that several ablations share (filter_nobalance) once."""
        stages = [s for a in ABLATIONS.values() if a.name in self.cfg.ablations for s in a.stages(self)]
        first: dict[str, Stage] = {}
        for stage in stages:
            first.setdefault(stage.name, stage)
        return list(first.values())

    def evaluated(self) -> list[str]:
        """Every trained policy the evaluation compares with SFT, in stage order."""
        return [*self.cfg.algorithms,
                *[p for a in ABLATIONS.values() if a.name in self.cfg.ablations for p in a.policy_names()],
                *[f"ppo_r{r}" for r in range(2, getattr(self.cfg, "rounds", 1) + 1)]]  # fmt: skip

    def versus(self) -> dict[str, Any]:
        """The evaluation's ``versus`` keyword: each later round's policy against the round before it
        (nothing when there is one round, so that a one-round run's evaluation is unchanged)."""
        n = getattr(self.cfg, "rounds", 1)
        pairs = {f"ppo_r{r}": "ppo" if r == 2 else f"ppo_r{r - 1}" for r in range(2, n + 1)}
        return {"versus": pairs} if pairs else {}

    def round_overlap(self) -> tuple[int, str]:
        """(labels per chosen pair, the key that sets it): a round's budget buys budget // overlap pairs."""
        return self.cfg.collect.overlap, "collect.overlap"

    def round_collect(self, r: int, policy: str, rm: str, members: list[str], seed: int) -> list[Stage]:
        """Round ``r``'s collect step, ending with ``data/comparisons_upto_r<r>.jsonl``: here the task's
        simulated annotators label the chosen pairs at once (the files profile pauses for people instead)."""
        from chatglm_rlhf.pipeline.stages import rounds

        c = self.cfg
        return [self.stage(f"collect_r{r}", rounds.collect_round, r, policy, rm, members, c.round,
                           c.collect.overlap, c.generation, seed + 100 * r, c.progress,
                           key=f"round_{r}", task=("collect",))]  # fmt: skip

    def rounds(self, seed: int) -> list[Stage]:
        """Rounds 2..``rounds``: (bootstrap RMs ->) the policy's answers annotated (:meth:`round_collect`)
        -> every round's comparisons filtered -> a new RM (from the SFT model, like round 1's) -> PPO
        continued from the previous round's policy, its KL still to SFT."""
        from chatglm_rlhf.pipeline.stages import reward, rounds

        c, out = self.cfg, []
        if getattr(c, "rounds", 1) > 1:
            overlap, key = self.round_overlap()
            if "ppo" not in c.algorithms:
                raise ConfigError("rounds: a later round continues PPO; algorithms must include ppo")
            if c.round.select == "uncertainty" and c.round.members < 2:
                raise ConfigError("round.members: select=uncertainty needs an ensemble of >= 2 reward models")
            if c.round.budget < overlap:
                raise ConfigError(f"round.budget: {c.round.budget} comparisons is less than one pair's "
                                  f"{overlap} ({key})")  # fmt: skip
        policy, filtered, rm = "ppo", "filter", "rm"
        for r in range(2, getattr(c, "rounds", 1) + 1):
            members = []
            if c.round.select == "uncertainty":
                members = [f"ens_r{r}_{m}" for m in range(c.round.members)]
                out += [
                    self.rm(n, filtered, bootstrap=1000 * seed + 10 * r + m) for m, n in enumerate(members)
                ]
            out += self.round_collect(r, policy, rm, members, seed)
            out.append(
                self.stage(f"filter_r{r}", reward.filter_, f"filter_r{r}", rounds.upto_name(r), c.filter)
            )
            out.append(
                self.rm(f"rm_r{r}", f"filter_r{r}", **({"init": rm} if c.round.rm_init == "previous" else {}))
            )
            steps = {"steps": c.round.ppo_steps} if c.round.ppo_steps else {}
            out.append(self.policy("ppo", f"ppo_r{r}", rm=f"rm_r{r}", init=policy, **steps))
            policy, filtered, rm = f"ppo_r{r}", f"filter_r{r}", f"rm_r{r}"
        return out


@dataclass(frozen=True)
class Profile:
    """One named variant: its config class, defaults over that class's, and how to build a run."""

    name: str
    title: str
    config: type
    defaults: dict[str, Any]
    build: Callable[[RunContext], list[Stage]]  # the stage list of a run
    make_task: Callable[[Any], Any]  # cfg -> the task
    supported_ablations: tuple[str, ...] = ()
    validate: Callable[[Any, str], None] = lambda cfg, where: None  # checks beyond types and choices
    scorer_batch_size: int | None = None
    out: str = "out/run"  # the default run folder
    wiring_check: bool = (
        False  # a smoke profile: every stage on a handful of prompts; its numbers mean nothing
    )
