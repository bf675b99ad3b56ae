"""``chatglm-rlhf plan``: memory per GPU for each role and strategy, before renting a cluster."""

from __future__ import annotations

from chatglm_rlhf.cli.common import add_stage_parser, stage_config
from chatglm_rlhf.plan import PlanConfig


def register(sub) -> None:
    p = add_stage_parser(
        sub,
        "plan",
        PlanConfig,
        "estimate GiB per GPU (weights, grads, optimizer, activations, KV cache) for each role and "
        "strategy (ddp, fsdp, zero2, zero3); formulas in docs/scaling.md",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from chatglm_rlhf.plan import format_plan, plan, plan_json

    cfg = stage_config(args)
    result = plan(cfg)
    print(plan_json(result) if cfg.format == "json" else format_plan(result))
    return 0
