"""``chatglm-rlhf evaluate``: policy vs baseline on a prompt set, judged pair by pair (win/tie/loss).

Both spellings work: ``--policy A --baseline B --prompts FILE --judge gold`` and the ``key=value`` style
of every stage (``policy=A baseline=B ...``); the ``--`` options win when both are given.
"""

from __future__ import annotations

from chatglm_rlhf.cli.common import add_stage_parser, stage_config
from chatglm_rlhf.evaluate.evaluate import EvaluateConfig

_SHORTCUTS = ("policy", "baseline", "prompts", "judge", "judge_model", "output_dir")


def register(sub) -> None:
    p = add_stage_parser(
        sub,
        "evaluate",
        EvaluateConfig,
        "compare a policy with a baseline (e.g. PPO vs SFT): win/tie/loss per category with a bootstrap CI",
    )
    p.add_argument("--policy", metavar="MODEL", help="same as policy=MODEL")
    p.add_argument("--baseline", metavar="MODEL", help="same as baseline=MODEL")
    p.add_argument("--prompts", metavar="FILE", help="same as prompts=FILE (ours or AlignBench JSONL)")
    p.add_argument("--judge", choices=("gold", "rm", "llm"), help="same as judge=...")
    p.add_argument("--judge-model", dest="judge_model", metavar="MODEL", help="same as judge_model=...")
    p.add_argument("--output-dir", dest="output_dir", metavar="DIR", help="same as output_dir=...")
    p.set_defaults(func=run)


def run(args) -> int:
    from dataclasses import replace

    from chatglm_rlhf.evaluate.run import run_evaluate

    cfg = stage_config(args)
    given = {k: getattr(args, k) for k in _SHORTCUTS if getattr(args, k, None) is not None}
    cfg = replace(cfg, **given)
    run_evaluate(cfg)
    return 0
