"""``chatglm-rlhf sft``: supervised fine-tuning on demonstrations."""

from __future__ import annotations

from chatglm_rlhf.cli.common import add_stage_parser, is_main_process, stage_config
from chatglm_rlhf.policy.sft import SFTConfig


def register(sub) -> None:
    p = add_stage_parser(sub, "sft", SFTConfig, "supervised fine-tuning (loss on response tokens only)")
    p.set_defaults(func=run)


def run(args) -> int:
    from chatglm_rlhf.policy.sft import run_sft

    cfg = stage_config(args)
    result = run_sft(cfg)
    if not is_main_process():
        return 0  # with several processes, rank 0 reports for all
    print(
        f"sft: {result['steps']} steps, final loss {result['train_loss']:.4f}; model saved to {cfg.output_dir}"
    )
    return 0
