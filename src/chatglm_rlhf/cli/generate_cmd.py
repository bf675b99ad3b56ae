"""``chatglm-rlhf generate``: sample k candidate responses per prompt for annotation."""

from __future__ import annotations

from chatglm_rlhf.cli.common import add_stage_parser, stage_config
from chatglm_rlhf.collect.generate import GenerateConfig


def register(sub) -> None:
    p = add_stage_parser(
        sub, "generate", GenerateConfig, "sample k responses per prompt (candidates to compare)"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from chatglm_rlhf.collect.generate import run_generate

    return run_generate(stage_config(args))
