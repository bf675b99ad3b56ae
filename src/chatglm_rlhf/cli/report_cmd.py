"""``chatglm-rlhf report DIR``: re-render ``DIR/report.html`` from ``DIR/metrics.json``."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="render a run's report.html from its metrics.json",
        description="Render DIR/report.html (one self-contained page with embedded plots) from "
        "DIR/metrics.json. The layout of metrics.json is documented in chatglm_rlhf.evaluate.report.page.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="DIR", help="the run folder holding metrics.json")
    p.add_argument("--metrics", metavar="FILE", help="read this metrics file instead of DIR/metrics.json")
    p.add_argument("--output", metavar="FILE", help="write the page here instead of DIR/report.html")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from chatglm_rlhf.errors import UserError
    from chatglm_rlhf.evaluate.report.page import write_report

    run_dir = Path(args.run_dir)
    path = Path(args.metrics) if args.metrics else run_dir / "metrics.json"
    if not path.exists():
        raise UserError(f"{path}: no metrics file (run the pipeline first, or pass --metrics FILE)")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(metrics, dict):
        raise UserError(f"{path}: expected a JSON object of metrics")
    out = write_report(run_dir, metrics, output=args.output)  # one page for every profile
    print(f"wrote {out}")
    return 0
