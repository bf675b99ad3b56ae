"""The ``chatglm-rlhf`` command.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its parser
and sets ``func`` (called with the parsed args, returns an exit code). Heavy imports (torch, fastapi)
happen inside ``func`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from chatglm_rlhf.errors import UserError

# Order is the order shown in --help: the pipeline's order.
COMMAND_MODULES = [
    "chatglm_rlhf.cli.data_cmd",
    "chatglm_rlhf.cli.sft_cmd",
    "chatglm_rlhf.cli.generate_cmd",
    "chatglm_rlhf.collect.annotate.cli",
    "chatglm_rlhf.cli.filter_cmd",
    "chatglm_rlhf.cli.rm_cmd",
    "chatglm_rlhf.cli.ppo_cmd",
    "chatglm_rlhf.cli.dpo_cmd",
    "chatglm_rlhf.cli.evaluate_cmd",
    "chatglm_rlhf.cli.report_cmd",
    "chatglm_rlhf.cli.pipeline_cmd",
    "chatglm_rlhf.cli.demo_cmd",
    "chatglm_rlhf.cli.plan_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatglm-rlhf",
        description="The ChatGLM-RLHF pipeline: collect preferences, train a reward model, align with PPO or DPO.",
    )
    from chatglm_rlhf import __version__

    parser.add_argument("--version", action="version", version=f"chatglm-rlhf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            # A stage that is not built yet (or whose optional extra is not installed) is simply absent.
            if e.name and (e.name == name or name.startswith(e.name)):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as e:  # bad input: a clear message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        _shutdown_distributed()


def _shutdown_distributed() -> None:
    """Tear the process group down before exit: left to interpreter shutdown, gloo's threads can abort
    a rank ("terminate called without an active exception") after the work is done."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
