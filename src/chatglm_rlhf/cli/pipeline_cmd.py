"""``chatglm-rlhf pipeline --config RECIPE``: every stage, resumable, from one recipe."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "pipeline",
        help="run every stage from one recipe (resumable; --from STAGE redoes from a stage)",
        description="Run every stage of a recipe into a run folder. Finished stages are skipped when the "
        "run is repeated; --from STAGE redoes that stage and all after it. With --config RECIPE, --help lists "
        "the keys of the recipe's profile.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    from chatglm_rlhf.cli.demo_cmd import ProfileHelp

    p.add_argument("-h", "--help", action=ProfileHelp)  # the keys of the recipe's profile
    p.add_argument("--config", required=True, metavar="RECIPE", help="YAML recipe, e.g. recipes/demo.yaml")
    p.add_argument("--out", default=None, help="run folder (default: out/<recipe name>)")
    p.add_argument("--from", dest="from_stage", metavar="STAGE", help="redo this stage and all after it")
    p.add_argument("--until", metavar="STAGE", help="stop after this stage (rerun without it to go on)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override a recipe value")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from chatglm_rlhf.cli import demo_cmd

    args.out = args.out or str(Path("out") / Path(args.config).stem)
    args.profile = None
    return demo_cmd.run(args)
