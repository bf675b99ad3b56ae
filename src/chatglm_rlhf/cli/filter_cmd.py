"""``chatglm-rlhf filter IN -o OUT [key=value ...]``: post-filter preference labels.

Writes the kept pairs to OUT, every dropped label with its reason to ``OUT.dropped.jsonl`` (``.jsonl``
stripped from the stem) and the numbers to ``OUT.summary.json``; prints a per-reason table and the
per-bucket "longer wins" rates before and after length balancing.
"""

from __future__ import annotations

from chatglm_rlhf.cli.common import add_stage_parser, stage_config
from chatglm_rlhf.reward.filtering import FilterConfig


def register(sub) -> None:
    p = add_stage_parser(
        sub,
        "filter",
        FilterConfig,
        "post-filter preference labels: majority vote, ties, cycles, duplicates, spammers, prompt rules, "
        "length balancing (IN -o OUT)",
    )
    # nargs="+": argparse stops filling the overrides positional at the first option, so the overrides
    # that follow "-o OUT" are collected here and handed back to the config in run().
    p.add_argument(
        "-o",
        "--output",
        dest="output_args",
        nargs="+",
        metavar=("OUT", "key=value"),
        help="filtered pairs JSONL (overrides may follow)",
    )
    p.set_defaults(func=run)


def split_input(overrides: list[str]) -> tuple[list[str], list[str]]:
    """Arguments without ``=`` are input paths (argparse cannot tell them from overrides)."""
    paths = [o for o in overrides if "=" not in o]
    return paths, [o for o in overrides if "=" in o]


def run(args) -> int:
    from chatglm_rlhf.errors import UserError
    from chatglm_rlhf.reward.filter_run import run_filter

    output, *after = args.output_args or [None]
    paths, args.overrides = split_input(list(args.overrides) + after)
    if len(paths) > 1:
        raise UserError(f"filter: one input file expected, got {paths}")
    cfg = stage_config(args)
    if paths:
        cfg.input = paths[0]
    if output:
        cfg.output = output
    run_filter(cfg)
    return 0
