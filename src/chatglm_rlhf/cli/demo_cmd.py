"""``chatglm-rlhf demo``: every stage on the embedded demo world (tiny models, simulated annotators), or
with ``--profile real`` on SmolLM2-135M-Instruct and HH-RLHF (see :mod:`chatglm_rlhf.pipeline.real`)."""

from __future__ import annotations

import argparse

REAL_PROFILES = ("real", "real-smoke")


def register(sub) -> None:
    from chatglm_rlhf.config import help_lines
    from chatglm_rlhf.pipeline.demo import PROFILES, DemoConfig
    from chatglm_rlhf.pipeline.real import RealConfig

    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the offline demo world (or --profile real: SmolLM2 on HH-RLHF)",
        description="Run the whole pipeline on the offline demo world: tiny local models, a gold judge and "
        "simulated annotators. --profile real runs it on SmolLM2-135M-Instruct and HH-RLHF instead. "
        "Re-running resumes; finished stages are skipped.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings, given as key=value (default profile shown):\n"
        + "\n".join(help_lines(DemoConfig))
        + "\n\nsettings of --profile real:\n"
        + "\n".join(help_lines(RealConfig)),
    )
    p.add_argument(
        "--out", default=None, help="run folder (default: out/demo, or out/real for real profiles)"
    )
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES) + list(REAL_PROFILES),
        default=None,
        help="smoke (< 3 min), default, real (SmolLM2 on HH-RLHF, < 45 min on 2 CPU cores), real-smoke",
    )
    p.add_argument("--config", metavar="RECIPE", help="YAML recipe overriding the profile")
    p.add_argument("--from", dest="from_stage", metavar="STAGE", help="redo this stage and all after it")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override a setting, e.g. sft.steps=100")
    p.set_defaults(func=run)


def profile_of(args) -> str | None:
    """The profile asked for: --profile, else a ``profile=`` override, else the recipe's ``profile:``."""
    from chatglm_rlhf.config import parse_overrides, read_yaml

    if args.profile:
        return args.profile
    cli = parse_overrides(args.overrides)
    if "profile" in cli:
        return cli["profile"]
    return read_yaml(args.config).get("profile") if args.config else None


def run(args) -> int:
    import json
    import time

    real = profile_of(args) in REAL_PROFILES
    if real:
        from chatglm_rlhf.pipeline.real import load_real_config as load
        from chatglm_rlhf.pipeline.real import run_real as go
    else:
        from chatglm_rlhf.pipeline.demo import load_demo_config as load
        from chatglm_rlhf.pipeline.demo import run_demo as go

    cfg = load(args.config, args.overrides, args.profile)
    out = args.out or ("out/real" if real else "out/demo")
    t0 = time.time()
    metrics = go(cfg, out, from_stage=args.from_stage)
    print(json.dumps({k: v for k, v in metrics.items() if k != "timing"}, indent=1)[:3000])
    print(f"demo ({cfg.profile}) finished in {time.time() - t0:.0f}s; metrics in {out}/metrics.json")
    return 0
