"""``chatglm-rlhf ppo``: PPO from the SFT model against a reward model (reference baseline, KL, ptx)."""

from __future__ import annotations

from chatglm_rlhf.cli.common import add_stage_parser, is_main_process, stage_config
from chatglm_rlhf.policy.ppo.config import PPOConfig


def register(sub) -> None:
    p = add_stage_parser(
        sub,
        "ppo",
        PPOConfig,
        "PPO against a reward model, with the paper's reference baseline, KL penalty and ptx SFT loss",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from chatglm_rlhf.policy.ppo.stage import run_ppo

    cfg = stage_config(args)
    result = run_ppo(cfg)
    if not is_main_process():
        return 0  # with several processes, rank 0 reports for all
    print(
        f"ppo: {result['steps']} steps in {result['seconds']:.0f}s; final reward {result['reward_final']:.4f}, "
        f"KL {result['kl_final']:.4f}; policy saved to {cfg.output_dir}"
    )
    return 0
