"""``chatglm-rlhf pg``: critic-free policy optimisation (``estimator=grpo|dr_grpo|rloo|reinforce_pp|ref_baseline``)."""

from __future__ import annotations

from chatglm_rlhf.cli.common import add_stage_parser, is_main_process, stage_config
from chatglm_rlhf.policy.pg.config import PGConfig


def register(sub) -> None:
    p = add_stage_parser(
        sub,
        "pg",
        PGConfig,
        "critic-free policy optimisation against a reward model: GRPO, Dr. GRPO, RLOO, REINFORCE++ or "
        "REINFORCE with the paper's reference baseline (estimator=...), with KL, ptx and the prompt filter",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from chatglm_rlhf.policy.pg.stage import run_pg

    cfg = stage_config(args)
    result = run_pg(cfg)
    if not is_main_process():
        return 0  # with several processes, rank 0 reports for all
    print(
        f"pg ({cfg.estimator}): {result['steps']} steps in {result['seconds']:.0f}s; final reward "
        f"{result['reward_final']:.4f}, KL {result['kl_final']:.4f}; policy saved to {cfg.output_dir}"
    )
    return 0
