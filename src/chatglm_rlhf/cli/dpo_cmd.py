"""``chatglm-rlhf dpo``: DPO / IPO / conservative DPO on a preference file or on RM-labelled policy samples."""

from __future__ import annotations

from chatglm_rlhf.cli.common import add_stage_parser, is_main_process, stage_config
from chatglm_rlhf.policy.dpo.config import DPOConfig


def register(sub) -> None:
    p = add_stage_parser(
        sub,
        "dpo",
        DPOConfig,
        "direct preference optimisation: pairs from a preference file (pairs_from=data) or sampled from "
        "the policy and labelled best-vs-worst by the reward model (pairs_from=rm)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from chatglm_rlhf.policy.dpo.stage import run_dpo

    cfg = stage_config(args)
    result = run_dpo(cfg)
    if not is_main_process():
        return 0  # with several processes, rank 0 reports for all
    print(
        f"dpo: {result['steps']} steps on {result['pairs']} pairs, final loss {result['train/loss']:.4f}, "
        f"implicit-reward accuracy {result['train/rewards/accuracy']:.2f}, margin "
        f"{result['train/rewards/margin']:.3f}; model saved to {cfg.output_dir}"
    )
    if "eval/rewards/accuracy" in result:
        print(
            f"dpo eval: loss {result['eval/loss']:.4f}, accuracy {result['eval/rewards/accuracy']:.2f}, "
            f"margin {result['eval/rewards/margin']:.3f}"
        )
    return 0
