"""``chatglm-rlhf demo``: every stage on the embedded demo world (tiny models, simulated annotators)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from chatglm_rlhf.config import help_lines
    from chatglm_rlhf.pipeline.demo import PROFILES, DemoConfig

    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the offline demo world",
        description="Run the whole pipeline on the offline demo world: tiny local models, a gold judge and "
        "simulated annotators. Re-running resumes; finished stages are skipped.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings, given as key=value (default profile shown):\n" + "\n".join(help_lines(DemoConfig)),
    )
    p.add_argument("--out", default="out/demo", help="run folder (default: out/demo)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None, help="smoke (< 3 min) or default")
    p.add_argument("--config", metavar="RECIPE", help="YAML recipe overriding the profile")
    p.add_argument("--from", dest="from_stage", metavar="STAGE", help="redo this stage and all after it")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override a setting, e.g. sft.steps=100")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import time

    from chatglm_rlhf.pipeline.demo import load_demo_config, run_demo

    cfg = load_demo_config(args.config, args.overrides, args.profile)
    t0 = time.time()
    metrics = run_demo(cfg, args.out, from_stage=args.from_stage)
    print(json.dumps({k: v for k, v in metrics.items() if k != "timing"}, indent=1)[:3000])
    print(f"demo ({cfg.profile}) finished in {time.time() - t0:.0f}s; metrics in {args.out}/metrics.json")
    return 0
