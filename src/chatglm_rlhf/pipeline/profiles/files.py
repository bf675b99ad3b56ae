"""The ``files`` profile: the pipeline on a user's own JSONL files (tasks/files), no Python written.

    checkpoint  the SFT model (``model=PATH``, a chat checkpoint)
    data        the user's prompts, SFT data and preferences, read and checked (tasks/files)
    generate    (no preferences given) k SFT candidates per prompt; the run stops with the annotate
                commands, and ``--from split`` resumes once the exported comparisons are in data/
    split       the preferences, leak-free by context: rm_train / rm_eval / judge_train / heldout
    filter, rm, judge_rm, ppo, dpo, evaluate (judge RM, proxy RM, LLM judge), probe   as the real profile

The reward models start from the SFT model itself (``rm.backbone=policy``) unless a backbone is given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from chatglm_rlhf.config import field_
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.pipeline.context import RunContext
from chatglm_rlhf.pipeline.profiles.base import Profile
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
from chatglm_rlhf.pipeline.stages import data, models
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


def on_any_device(section):
    """A trainer section of the real profile without its CPU-only choices (cpu, mixed_precision=no)."""
    return dataclasses.replace(section, cpu=False, mixed_precision="auto")


def _split(ctx: RunContext) -> dict:
    return ctx.task.split(ctx.data)


def _build(ctx: RunContext):
    from chatglm_rlhf.errors import UserError

    b, c = JudgedStages(ctx), ctx.cfg
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
