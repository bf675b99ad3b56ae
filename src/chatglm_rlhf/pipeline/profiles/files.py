"""The ``files`` profile: the pipeline on a user's own JSONL files (tasks/files), no Python written.

    checkpoint  the SFT model (``model=PATH``, a chat checkpoint)
    data        the user's prompts, SFT data and preferences, read and checked (tasks/files)
    generate    (no preferences given) k SFT candidates per prompt; the run stops with the annotate
                commands, and ``--from split`` resumes once the exported comparisons are in data/
    split       the preferences, leak-free by context: rm_train / rm_eval / judge_train / heldout
    filter, rm, judge_rm, ppo, dpo   as the real profile
    rounds=N    per round r >= 2 (pipeline/stages/human_rounds.py): [ens_r<r>_<m>] -> batch_r<r> (the
                policy's answers, the pairs chosen under round.budget; the run stops with the annotate
                commands) -> merge_r<r> (``--from merge_r<r>``) -> filter_r<r> -> rm_r<r> -> ppo_r<r>
    evaluate (judge RM, proxy RM, LLM judge), probe   as the real profile

The reward models start from the SFT model itself (``rm.backbone=policy``) unless a backbone is given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from chatglm_rlhf.config import POSITIVE, field_
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.pipeline.context import RunContext
from chatglm_rlhf.pipeline.profiles.base import Profile, RoundSettings
from chatglm_rlhf.pipeline.profiles.real import (
    JudgedConfig,
    JudgedStages,
    RMChoice,
    dpo_defaults,
    pg_defaults,
    ppo_defaults,
    rm_defaults,
    validate_judged,
)
from chatglm_rlhf.pipeline.stages import data, human_rounds, models
from chatglm_rlhf.policy.dpo.config import DPOConfig
from chatglm_rlhf.policy.online.config import PGConfig, PPOConfig
from chatglm_rlhf.reward.rm_config import RMConfig
from chatglm_rlhf.tasks.files.task import FilesSettings


@dataclass
class FilesConfig(JudgedConfig):
    profile: str = field_("files", help="files: a user's prompts, SFT data and preferences")
    model: str = field_("", help="the SFT model: a local chat checkpoint (required)", path=True)
    task: FilesSettings = field(default_factory=FilesSettings)
    rm: RMChoice = field(default_factory=lambda: RMChoice("policy"))
    judge_rm: RMChoice = field(default_factory=lambda: RMChoice("policy"))
    k: int = field_(3, help="generate: SFT candidates per prompt for people to compare (no preferences)")
    generation: GenerationSettings = field(
        default_factory=lambda: GenerationSettings(max_new_tokens=128, temperature=1.0, batch_size=16)
    )
    # Your model on your machine: the GPU when there is one (device=auto), each trainer's precision chosen
    # per device (mixed_precision=auto); the real profile's CPU-only choices are not inherited.
    rm_train: RMConfig = field(default_factory=lambda: on_any_device(rm_defaults()))
    judge_rm_train: RMConfig = field(default_factory=lambda: on_any_device(rm_defaults()))
    ppo: PPOConfig = field(default_factory=lambda: on_any_device(ppo_defaults()))
    pg: PGConfig = field(default_factory=lambda: on_any_device(pg_defaults()))
    dpo: DPOConfig = field(default_factory=lambda: on_any_device(dpo_defaults()))
    overlap: int = field_(
        3, added=True, check=POSITIVE,
        help="annotators per pair in the annotation app (annotate load --overlap); a round's budget of "
        "round.budget comparisons is round.budget // overlap pairs",
    )  # fmt: skip
    rounds: int = field_(
        1, added=True, check=POSITIVE,
        help="feedback rounds: each after the first has people annotate the current policy's answers "
        "(round.budget comparisons; the run pauses for them), retrains the RM on every round's and "
        "continues PPO from the last round's policy",
    )  # fmt: skip
    # rl_prompts: never a held-out context (the split says which), whether or not task.prompts is given.
    round: RoundSettings = field(default_factory=lambda: RoundSettings(prompts="rl_prompts"))


def on_any_device(section):
    """A trainer section of the real profile without its CPU-only choices (cpu, mixed_precision=no)."""
    return dataclasses.replace(section, cpu=False, mixed_precision="auto")


def _split(ctx: RunContext) -> dict:
    return ctx.task.split(ctx.data)


class FilesStages(JudgedStages):
    """The judged stages, with a feedback round's collect step done by people in the annotation app."""

    def round_overlap(self) -> tuple[int, str]:
        return self.cfg.overlap, "overlap"

    def round_collect(self, r: int, policy: str, rm: str, members: list[str], seed: int) -> list:
        c = self.cfg
        return [
            self.stage(f"batch_r{r}", human_rounds.batch, r, policy, rm, members, c.round, c.overlap, c.generation,
                       c.task.seed + 100 * r, c.progress, key=f"round_{r}",
                       pause=lambda ctx: human_rounds.awaiting(ctx, r)),
            self.stage(f"merge_r{r}", human_rounds.merge, r, key=f"round_{r}"),
        ]  # fmt: skip


def _build(ctx: RunContext):
    from chatglm_rlhf.errors import UserError

    b, c = FilesStages(ctx), ctx.cfg
    if not c.model:
        raise UserError("files profile: model=PATH (the SFT chat checkpoint) is required")
    stages = [b.stage("checkpoint", models.checkpoint, c.model), b.stage("data", data.data, task=True)]
    if not c.task.preferences:
        stages.append(b.stage("generate", data.generate, c.k, c.generation, c.task.seed, c.progress,
                              pause=data.awaiting_annotation))  # fmt: skip
    return [*stages, b.stage("split", _split, task=True), *b.tail(c.task.seed, c.task)]


def _task(cfg: FilesConfig):
    from chatglm_rlhf.tasks.files.task import FilesTask

    return FilesTask(cfg.task)


PROFILES = [
    Profile(
        "files",
        "your files",
        FilesConfig,
        {},
        _build,
        _task,
        supported_ablations=("ptx", "critic_free"),
        validate=lambda cfg, where: validate_judged(cfg, where, cfg.task),
        out="out/files",
    )  # fmt: skip
]
