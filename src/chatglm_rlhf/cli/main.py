"""The ``chatglm-rlhf`` command.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its parser
and sets ``func`` (called with the parsed args, returns an exit code). Heavy imports (torch, fastapi)
happen inside ``func`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from chatglm_rlhf.errors import UserError

# (name, module, one-line help), in the pipeline's order. Only the module of the command being run is
# imported (the others would pull in torch and transformers), so `chatglm-rlhf --help` stays fast.
COMMANDS = [
    ("data", "chatglm_rlhf.cli.data_cmd", "dataset statistics and format conversion"),
    ("sft", "chatglm_rlhf.cli.sft_cmd", "supervised fine-tuning (loss on response tokens only)"),
    ("generate", "chatglm_rlhf.cli.generate_cmd", "sample k responses per prompt (candidates to compare)"),
    ("annotate", "chatglm_rlhf.collect.annotate.cli", "collect human preferences (web app)"),
    ("filter", "chatglm_rlhf.cli.filter_cmd", "post-filter preference labels (majority, ties, cycles, spam, length balancing)"),
    ("rm", "chatglm_rlhf.cli.rm_cmd", "reward model: train | eval | score"),
    ("<algorithms>", "", ""),  # one command per algorithm with a CLI in policy/registry.py
    ("evaluate", "chatglm_rlhf.cli.evaluate_cmd", "policy vs baseline: win/tie/loss per category with a bootstrap CI"),
    ("report", "chatglm_rlhf.cli.report_cmd", "render a run's report.html from its metrics.json"),
    ("pipeline", "chatglm_rlhf.cli.pipeline_cmd", "run every stage from one recipe (resumable)"),
    ("demo", "chatglm_rlhf.cli.demo_cmd", "run the whole pipeline on the demo world, or --profile real"),
    ("plan", "chatglm_rlhf.cli.plan_cmd", "estimate GiB per GPU for each role under ddp / fsdp / zero2 / zero3"),
]  # fmt: skip


def commands() -> list[tuple[str, str, str]]:
    """COMMANDS with the registered policy algorithms in place of ``<algorithms>``."""
    from chatglm_rlhf.policy.registry import ALGORITHMS

    algos = [(a.name, a.cli, a.help) for a in ALGORITHMS.values() if a.cli]
    out: list[tuple[str, str, str]] = []
    for row in COMMANDS:
        out += algos if row[0] == "<algorithms>" else [row]
    return out


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatglm-rlhf",
        description="The ChatGLM-RLHF pipeline: collect preferences, train a reward model, align with PPO or DPO.",
    )
    from chatglm_rlhf import __version__

    parser.add_argument("--version", action="version", version=f"chatglm-rlhf {__version__}")
    parser.add_argument(
        "--verbose", action="store_true", help="every library log, progress bar and read report"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, module_name, help_text in commands():
        if name != wanted:
            sub.add_parser(name, help=help_text)  # a placeholder: enough for the top-level --help
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            # An optional extra that is not installed (e.g. the annotation app): say which.
            if e.name and not e.name.startswith("chatglm_rlhf"):
                sub.add_parser(name, help=help_text).set_defaults(func=_missing(name, e.name))
                continue
            raise
        module.register(sub)
    return parser


def _missing(command: str, package: str):
    def run(_args) -> int:
        print(f"error: `{command}` needs the package {package!r}; install it (see README)", file=sys.stderr)
        return 2

    return run


def main(argv: list[str] | None = None) -> int:
    from chatglm_rlhf.cli.common import options_as_overrides, set_argv

    argv = sys.argv[1:] if argv is None else list(argv)
    # Before torch loads OpenMP (libgomp): a waiting thread spins 10,000 times, not 300,000, then sleeps.
    # Spinning threads made a smoke run 5.8x slower when another job held both cores; this keeps the idle
    # time and the thread count (so every result) and degrades to ~2.5x (benchmarks/busy_smoke.py,
    # docs/results.md). A value the user set is kept.
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    if "--verbose" in argv:  # anywhere on the line: every library's logs and bars, every read report
        from chatglm_rlhf.utils.console import VERBOSE_ENV

        argv = [a for a in argv if a != "--verbose"]
        os.environ[VERBOSE_ENV] = "1"
    set_argv(argv)
    parser = build_parser(argv)
    args = parser.parse_args(options_as_overrides(parser, argv))
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
    except Exception as e:  # a full disk (or a file-size limit): one line, what was kept, what to do
        from chatglm_rlhf.utils.files import disk_full_message, is_disk_full

        if not is_disk_full(e):
            raise
        print(f"error: {disk_full_message(e)}", file=sys.stderr)
        return 2
    finally:
        _shutdown_distributed()


def _shutdown_distributed() -> None:
    """Tear the process group down before exit: left to interpreter shutdown, gloo's threads can abort
    a rank ("terminate called without an active exception") after the work is done."""
    if "torch" not in sys.modules:
        return
    engines = sys.modules.get("chatglm_rlhf.models.vllm_backend")
    if engines is not None:  # vLLM's groups first, while the default group they hang on still exists
        engines.shutdown_engines()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
