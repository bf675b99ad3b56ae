"""Shared CLI plumbing: every stage takes ``--config recipe.yaml`` and ``key=value`` overrides."""

from __future__ import annotations

import argparse
from typing import Any


def add_stage_parser(sub, name: str, cls: type, help: str, section: str | None = None):  # noqa: A002
    """A subcommand whose options are the fields of dataclass ``cls``, listed in ``--help``."""
    from chatglm_rlhf.config import help_lines

    p = sub.add_parser(
        name,
        help=help,
        description=help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="options, given as key=value (default shown):\n" + "\n".join(help_lines(cls)),
    )
    p.add_argument(
        "--config", metavar="RECIPE", help="YAML recipe (its '%s:' section if present)" % (section or name)
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override a recipe value")
    p.set_defaults(config_cls=cls, config_section=section or name)
    return p


def stage_config(args: argparse.Namespace) -> Any:
    from chatglm_rlhf.config import load_config

    return load_config(args.config_cls, args.config, args.overrides, section=args.config_section)


def is_main_process() -> bool:
    """True on rank 0 (and without distributed launch): with several processes, rank 0 reports for all."""
    from accelerate import PartialState

    return PartialState().is_main_process
