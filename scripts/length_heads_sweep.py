"""Choose the length head's weight on the dev split: RMs with ODIN's length head at several
``rm.length_coef`` values, trained on a finished demo run's unbalanced pairs (``filter_nobalance``) with
the profile's RM recipe, each scored on the RM's held-out split of those pairs (never the evaluation
prompts): gold accuracy and |corr(reward, length)| on the gold ties, beside the run's own RMs (buckets:
``rm``; none: ``rm_nobalance``; ``rm_heads`` at the run's coefficient).

    python scripts/length_heads_sweep.py RUN [--coefs 0.1,0.3] [key=value ...]   (the run's overrides)

The sweep's RMs go to RUN/models/sweep_rm_heads_<coef> (no stage of the run has such a name); prints a
table and writes RUN/sweep/length_heads_sweep.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--coefs", default="0.1,0.3")
    ap.add_argument("--profile", default="default")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    from chatglm_rlhf.pipeline.context import RunContext
    from chatglm_rlhf.pipeline.run import get_profile, load_pipeline_config
    from chatglm_rlhf.pipeline.stages import reward

    run = Path(args.run)
    cfg = load_pipeline_config(None, list(args.overrides), profile=args.profile)
    p = get_profile(cfg.profile)
    ctx = RunContext(cfg, run, p.make_task(cfg), scorer_batch_size=p.scorer_batch_size)
    rows = []
    for name in ("rm", "rm_nobalance", "rm_heads"):
        f = run / "models" / name / "rm_stage_metrics.json"
        if f.exists():
            m = json.loads(f.read_text())
            rows.append(
                {
                    "rm": name,
                    "gold_accuracy": m["gold_accuracy"],
                    "length_correlation": m["length_correlation"],
                }
            )
    for coef in [float(x) for x in args.coefs.split(",")]:
        rcfg = dataclasses.replace(cfg.rm, length_head=True, length_coef=coef)
        name = f"sweep_rm_heads_{coef:g}"  # models/<name>: no stage of the run has such a name
        m = reward.rm(ctx, name, "filter_nobalance/filtered.jsonl", rcfg, run / "models" / "sft",
                      eval_fraction=0.15, seed=cfg.task.seed, progress=False)  # fmt: skip
        rows.append(
            {"rm": name, "gold_accuracy": m["gold_accuracy"], "length_correlation": m["length_correlation"]}
        )
    print(f"{'rm':<16} {'gold acc (dev)':>15} {'corr(r, len) gold ties (dev)':>30}")
    for r in rows:
        print(f"{r['rm']:<16} {r['gold_accuracy']:15.3f} {r['length_correlation']:30.3f}")
    (run / "sweep").mkdir(exist_ok=True)
    (run / "sweep" / "length_heads_sweep.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
