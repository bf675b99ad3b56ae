"""Would the reference baseline r(x, y) - r(x, y_ref) lower the reward's spread on this data?

usage: python scripts/baseline_variance.py PPO_DIR [PPO_DIR ...]
Reads a PPO run's prompt_filter.jsonl (k scores of the SFT policy's samples per prompt) and
reference_baseline.jsonl (the reference answer's score per prompt), both written before the first step,
and prints the share of the score variance that lies between prompts, the std of r and of r - r_ref over
the same samples. Subtracting one reference answer's score removes the prompt's level but adds that
answer's own noise: it lowers the spread only when cov(r, r_ref) > var(r_ref) / 2. The mean of k sampled
answers (`ppo.baseline_k=k ppo.baseline_greedy=false`) adds only 1/k of the within-prompt variance.
Two shares are printed: the plain one (variance of the k-sample prompt means over the total) and the
unbiased one (one-way ANOVA: the means' variance less their own sampling noise w/k, w the within-prompt
variance with the n - 1 denominator), which is what a baseline can remove at best.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def one(run: Path) -> dict:
    from chatglm_rlhf.policy.online.baseline_noise import answers_needed, variance_split

    ref_rows = rows(run / "reference_baseline.jsonl")
    ref = {r["key"]: r["score"] for r in ref_rows}
    sampled = [r for r in rows(run / "prompt_filter.jsonl") if r["key"] in ref and len(r["scores"]) > 1]
    if not sampled:
        raise SystemExit(f"{run}: no prompt with both k > 1 filter samples and a reference score")
    raw = [s for r in sampled for s in r["scores"]]
    minus = [s - ref[r["key"]] for r in sampled for s in r["scores"]]
    split = variance_split([r["scores"] for r in sampled])
    ref_k = len(ref_rows[0].get("scores") or [0])  # older caches hold only the mean
    return {"run": str(run), "prompts": len(sampled), "k": int(split["k"]), "reference_answers": ref_k,
            "between_prompt_share": split["share"], "between_prompt_share_unbiased": split["share_unbiased"],
            "answers_needed": answers_needed(split["between"], split["within"]),
            "std_r": statistics.pstdev(raw), "std_r_minus_ref": statistics.pstdev(minus)}  # fmt: skip


def main(dirs: list[str]) -> None:
    for d in dirs:
        o = one(Path(d))
        print(f"{o['run']}: {o['prompts']} prompts x {o['k']} samples; between-prompt share of the variance "
              f"{o['between_prompt_share']:.2f} (unbiased {o['between_prompt_share_unbiased']:.2f}); std r "
              f"{o['std_r']:.3f}, std r - r_ref {o['std_r_minus_ref']:.3f} (r_ref: mean of "
              f"{o['reference_answers']} answer(s); needed to lower the spread: {o['answers_needed']})")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
