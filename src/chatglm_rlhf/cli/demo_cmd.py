"""``chatglm-rlhf demo``: every stage on the embedded demo world (tiny models, simulated annotators), or
with ``--profile real`` on SmolLM2-135M-Instruct and HH-RLHF, or ``--profile files`` on a user's files
(see :mod:`chatglm_rlhf.pipeline.profiles`)."""

from __future__ import annotations

import argparse


def profile_help(name: str) -> str:
    """The keys of profile ``name``: the run's own first, then one block per section (the keys a pipeline
    fills in are left out: giving one is an error)."""
    from chatglm_rlhf.config import help_lines
    from chatglm_rlhf.pipeline.run import default_config, get_profile
    from chatglm_rlhf.policy.registry import with_algorithm_sections

    lines = help_lines(with_algorithm_sections(get_profile(name).config), instance=default_config(name))
    top = [x for x in lines if "." not in x.split("=")[0]]
    sections: dict[str, list[str]] = {}
    for x in lines:
        key = x.split("=")[0].strip()
        if "." in key:
            sections.setdefault(key.split(".")[0], []).append(x)
    blocks = [f"settings of --profile {name}, given as key=value (other profiles: --profile P --help):", *top]
    for section, rows in sections.items():
        blocks += ["", f"[{section}]", *rows]
    return "\n".join(blocks)


class ProfileHelp(argparse.Action):
    """``--help`` that lists the chosen profile's keys (``--profile``, a recipe's ``profile:``, or the
    default), wherever on the line ``--profile`` stands."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show this help and the profile's keys",
        )

    def __call__(self, parser, namespace, values, option_string=None):
        from chatglm_rlhf.cli.common import current_argv
        from chatglm_rlhf.pipeline.run import profile_name

        argv = current_argv()
        given = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--profile"), None)
        recipe = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), None)
        try:
            name = profile_name(
                recipe, [a for a in argv if "=" in a and not a.startswith("-")], given, "default"
            )
        except Exception:  # noqa: BLE001 - a bad recipe still gets the help of the default profile
            name = "default"
        parser.epilog = profile_help(name)
        parser.print_help()
        parser.exit()


def register(sub) -> None:
    from chatglm_rlhf.pipeline.profiles import all_profiles

    profiles = all_profiles()
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the offline demo world (or --profile real: SmolLM2 on HH-RLHF)",
        description="Run the whole pipeline on the offline demo world: tiny local models, a gold judge and "
        "simulated annotators. --profile real runs it on SmolLM2-135M-Instruct and HH-RLHF instead, "
        "--profile files on your own files. Re-running resumes; finished stages are skipped.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    p.add_argument("-h", "--help", action=ProfileHelp)
    p.add_argument("--out", default=None, help="run folder (default: out/demo, out/real or out/files)")
    p.add_argument(
        "--profile",
        choices=list(profiles),
        default=None,
        help="smoke (< 3 min), default, real (SmolLM2 on HH-RLHF, ~2 h on 2 CPU cores), real-smoke, "
        "files (your prompts, SFT data and preferences)",
    )
    p.add_argument("--config", metavar="RECIPE", help="YAML recipe overriding the profile")
    p.add_argument("--from", dest="from_stage", metavar="STAGE", help="redo this stage and all after it")
    p.add_argument("--until", metavar="STAGE", help="stop after this stage (rerun without it to go on)")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="override a setting, e.g. sft.max_steps=100"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import time

    from chatglm_rlhf.pipeline.run import get_profile, load_pipeline_config, run_pipeline

    cfg = load_pipeline_config(args.config, args.overrides, args.profile)
    out = args.out or get_profile(cfg.profile).out
    t0 = time.time()
    metrics = run_pipeline(cfg, out, from_stage=args.from_stage, until=args.until)
    if "paused_after" in metrics:
        print(
            f"{cfg.profile}: paused after {metrics['paused_after']} ({time.time() - t0:.0f}s); run folder {out}"
        )
        return 0
    print(summary(metrics))
    if get_profile(cfg.profile).wiring_check:
        print(
            f"{cfg.profile} is a wiring check: every stage ran, on a handful of prompts; its numbers mean nothing"
        )
    print(
        f"{cfg.profile} finished in {time.time() - t0:.0f}s; report {out}/report.html, every number in "
        f"{out}/metrics.json"
    )
    return 0


def summary(metrics: dict) -> str:
    """A few lines for the terminal: each policy's win rate vs SFT (by gold, else by the judge RM), its
    answers' most common share, the reward model's accuracy and what the filter kept."""
    rows = []
    for name, ev in (metrics.get("evaluate") or {}).items():
        if not isinstance(ev, dict):
            continue
        if "gold_win_rate_vs_sft" in ev:
            rows.append((name, "gold", ev["gold_win_rate_vs_sft"], ev.get("top_response_share")))
        elif isinstance(ev.get("judge_rm"), dict):
            rows.append((name, "judge RM", ev["judge_rm"].get("win_rate"), None))
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"{'policy':<16} {'judge':<9} {'win rate vs SFT':>15} {'top answer share':>17}"]
    lines += [f"{n:<16} {j:<9} {f(w):>15} {f(t):>17}" for n, j, w, t in rows]
    rm, flt = metrics.get("rm") or {}, metrics.get("filter") or {}
    lines.append(f"reward model: held-out accuracy {f(rm.get('eval_accuracy'))}, gold accuracy "
                 f"{f(rm.get('gold_accuracy'))}; filter kept {flt.get('kept', '-')} of {flt.get('read', '-')}")  # fmt: skip
    from chatglm_rlhf.evaluate.report.rounds import terminal_lines

    lines += terminal_lines(metrics)
    return "\n".join(lines)
