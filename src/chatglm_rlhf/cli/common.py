"""Shared CLI plumbing: every stage takes ``--config recipe.yaml`` and ``key=value`` overrides.

``--key value`` and ``--key=value`` are accepted too (:func:`options_as_overrides` rewrites them to
``key=value`` before argparse sees them; a bare ``--flag`` means ``flag=true``). Every stage command takes
``threads=N`` (torch CPU threads, 0 = torch's default), a config key where the stage's config has one.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

THREADS_HELP = "  threads = 0  [int]  torch CPU threads (0 = torch's default)"


def add_stage_parser(sub, name: str, cls: type, help: str, section: str | None = None):  # noqa: A002
    """A subcommand whose options are the fields of dataclass ``cls``, listed in ``--help``."""
    from chatglm_rlhf.config import help_lines

    lines = help_lines(cls)
    if not _has_threads(cls):
        lines.append(THREADS_HELP)
    p = sub.add_parser(
        name,
        help=help,
        description=help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="options, given as key=value or --key value (default shown):\n" + "\n".join(lines),
    )
    p.add_argument(
        "--config", metavar="RECIPE", help="YAML recipe (its '%s:' section if present)" % (section or name)
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override a recipe value")
    p.set_defaults(config_cls=cls, config_section=section or name)
    return p


def _has_threads(cls: type) -> bool:
    return any(f.name == "threads" for f in dataclasses.fields(cls))


def stage_config(args: argparse.Namespace) -> Any:
    """The stage's config from its recipe and overrides; ``threads`` applied to torch here."""
    from chatglm_rlhf.config import ConfigError, coerce, load_config

    overrides = list(args.overrides)
    threads = None
    if not _has_threads(args.config_cls):  # a stage without the key still takes threads=N
        given = [o for o in overrides if o.split("=", 1)[0].strip() == "threads"]
        overrides = [o for o in overrides if o not in given]
        if given:
            threads = coerce(given[-1].split("=", 1)[1].strip(), int, "threads", "command line")
    cfg = load_config(args.config_cls, args.config, overrides, section=args.config_section)
    from chatglm_rlhf.utils.train_config import require_reporter

    require_reporter(getattr(cfg, "report_to", "none"))  # before any model loads
    threads = getattr(cfg, "threads", threads)
    if threads is not None and threads < 0:
        raise ConfigError(f"threads must be >= 0 (0 = torch's default), got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)
    return cfg


def stage_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser | None:
    """The stage (sub)parser ``argv`` selects, or None when the command is not a stage command."""
    p = parser
    for tok in argv:
        if tok.startswith("-"):
            continue
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or tok not in subs[0].choices:
            break
        p = subs[0].choices[tok]
    return p if p is not parser and p.get_default("config_cls") is not None else None


def options_as_overrides(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Rewrite a stage command's ``--key value`` / ``--key=value`` / ``--flag`` to ``key=value``.

    Options the stage parser declares (``--config``, ``-o``, ``--help``) are left alone; ``-`` in a key
    becomes ``_`` (``--max-length 64`` is ``max_length=64``). Other commands' argv is returned as it is.
    """
    p = stage_parser(parser, argv)
    if p is None:
        return argv
    known = set(p._option_string_actions)
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        name = tok.split("=", 1)[0]
        if not tok.startswith("--") or tok == "--" or name in known:
            out.append(tok)
            i += 1
            continue
        key = name[2:].replace("-", "_")
        if "=" in tok:
            out.append(f"{key}={tok.split('=', 1)[1]}")
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--") and "=" not in argv[i + 1]:
            out.append(f"{key}={argv[i + 1]}")
            i += 2
        else:  # a bare flag: --cpu
            out.append(f"{key}=true")
            i += 1
    return out


def is_main_process() -> bool:
    """True on rank 0 (and without distributed launch): with several processes, rank 0 reports for all."""
    from accelerate import PartialState

    return PartialState().is_main_process


_ARGV: list[str] = []


def set_argv(argv: list[str]) -> None:
    """The command line being run (``main`` sets it): what a help action may look at beyond its own flag."""
    _ARGV[:] = list(argv)


def current_argv() -> list[str]:
    return list(_ARGV)
