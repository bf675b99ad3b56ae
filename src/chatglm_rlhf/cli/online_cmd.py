"""``chatglm-rlhf ppo`` and ``chatglm-rlhf pg``: the online RL loop from paths, one section each."""

from __future__ import annotations

from chatglm_rlhf.cli.common import add_stage_parser, is_main_process, stage_config


def register_online(sub, name: str, config: type, help: str) -> None:  # noqa: A002
    p = add_stage_parser(sub, name, config, help)
    p.set_defaults(func=run)


def run(args) -> int:
    from chatglm_rlhf.policy.online.stage import run as run_online

    cfg = stage_config(args)
    result = run_online(cfg)
    if not is_main_process():
        return 0  # with several processes, rank 0 reports for all
    print(
        f"{cfg.NAME} ({cfg.estimator}): {result['steps']} steps in {result['seconds']:.0f}s; final reward "
        f"{result['reward_final']:.4f}, KL {result['kl_final']:.4f}; policy saved to {cfg.output_dir}"
    )
    return 0
