"""``chatglm-rlhf demo``: every stage on the embedded demo world (tiny models, simulated annotators), or
with ``--profile real`` on SmolLM2-135M-Instruct and HH-RLHF, or ``--profile files`` on a user's files
(see :mod:`chatglm_rlhf.pipeline.profiles`)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from chatglm_rlhf.config import help_lines
    from chatglm_rlhf.pipeline.profiles import all_profiles
    from chatglm_rlhf.pipeline.run import default_config

    profiles = all_profiles()
    shown = {}  # one listing per config class, with the first profile's defaults
    from chatglm_rlhf.policy.registry import with_algorithm_sections

    for name, p in profiles.items():
        shown.setdefault(with_algorithm_sections(p.config), name)
    epilog = "\n\n".join(
        f"settings of --profile {name}, given as key=value:\n"
        + "\n".join(help_lines(cls, instance=default_config(name)))
        for cls, name in shown.items()
    )
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the offline demo world (or --profile real: SmolLM2 on HH-RLHF)",
        description="Run the whole pipeline on the offline demo world: tiny local models, a gold judge and "
        "simulated annotators. --profile real runs it on SmolLM2-135M-Instruct and HH-RLHF instead, "
        "--profile files on your own files. Re-running resumes; finished stages are skipped.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=epilog,
    )
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
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override a setting, e.g. sft.steps=100")
    p.set_defaults(func=run)


def run(args) -> int:
    import time

    from chatglm_rlhf.pipeline.run import get_profile, load_pipeline_config, run_pipeline

    cfg = load_pipeline_config(args.config, args.overrides, args.profile)
    out = args.out or get_profile(cfg.profile).out
    t0 = time.time()
    metrics = run_pipeline(cfg, out, from_stage=args.from_stage)
    if "paused_after" in metrics:
        print(
            f"{cfg.profile}: paused after {metrics['paused_after']} ({time.time() - t0:.0f}s); run folder {out}"
        )
        return 0
    print(summary(metrics))
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
    return "\n".join(lines)
