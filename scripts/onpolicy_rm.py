"""A reward model's gold accuracy on a policy's own answers (a demo-world run folder).

usage: python scripts/onpolicy_rm.py RUN_DIR POLICY RM [RM ...] [--k 4] [--prompts dev_prompts] [--seed 0]

The policy (``models/POLICY``) answers each prompt of ``data/<prompts>.jsonl`` k times (sampling, the
run's generation settings); every pair of its answers that the gold judge decides is scored by each RM,
and the share it orders as gold does is printed (rounds.on_policy_accuracy, the figure a feedback
round's collect stage reports for the previous RM). Dev prompts by default: never trained on, never the
evaluation's. Assumes the run used the default world settings apart from ``task.seed`` (pass --seed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("policy")
    p.add_argument("rms", nargs="+")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--prompts", default="dev_prompts")
    p.add_argument("--seed", type=int, default=0, help="the run's task.seed")
    a = p.parse_args(argv)
    from chatglm_rlhf.collect.batch import answer_scores
    from chatglm_rlhf.collect.generate import generate_candidates
    from chatglm_rlhf.collect.select import candidate_pairs
    from chatglm_rlhf.pipeline.context import RunContext
    from chatglm_rlhf.pipeline.run import get_profile, load_pipeline_config
    from chatglm_rlhf.pipeline.stages.rounds import on_policy_accuracy

    cfg = load_pipeline_config(None, [f"task.seed={a.seed}"], profile="default")
    ctx = RunContext(cfg, Path(a.run), get_profile("default").make_task(cfg))
    model, tok = ctx.load(a.policy)
    cands = generate_candidates(model, tok, ctx.samples(a.prompts), a.k, cfg.generation, seed=a.seed + 7,
                                progress=False)  # fmt: skip
    pairs = candidate_pairs(cands)
    out = {"run": a.run, "policy": a.policy, "prompts": a.prompts, "k": a.k}
    for rm in a.rms:
        out[rm] = on_policy_accuracy(ctx, cands, pairs, answer_scores([ctx.scorer(rm)], cands)[0].tolist())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
