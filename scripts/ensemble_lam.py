"""Which ``ensemble.lam`` ranks a policy's own answers most like gold? (the pessimistic ablation's default)

usage: python scripts/ensemble_lam.py RUN [--policy ppo] [--lams 0,0.5,1,2,4]
On a demo run with the pessimistic ablation's members (``models/ens_<m>``) and a PPO with snapshots
(``ppo.snapshot_every``), SFT and every checkpoint of ``--policy`` answer the dev prompts (greedy, as the
curve does). Over the pairs of different answers to the same prompt that gold does not call a tie, it
prints how often the proxy RM and ``mean − lam·std`` of the members order them as gold does, and per model
the members' mean score, their std (the penalty's size) and the spread of the mean over answers. Dev
prompts only: the evaluation prompts are never looked at.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

import torch


def pair_accuracy(groups: list[list[tuple[float, float]]]) -> float | None:
    """Share of (reward, gold) pairs within a group that the reward orders as gold does (gold ties out)."""
    agree = total = 0
    for g in groups:
        for (ra, ga), (rb, gb) in itertools.combinations(g, 2):
            if ga == gb:
                continue
            total += 1
            agree += (ra - rb) * (ga - gb) > 0
    return agree / total if total else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--policy", default="ppo")
    ap.add_argument("--lams", default="0,0.5,1,2,4")
    a = ap.parse_args()
    from chatglm_rlhf.data.io import read_samples
    from chatglm_rlhf.evaluate.evaluate import EvalGeneration, generate_responses
    from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer
    from chatglm_rlhf.pipeline.stages.overopt import checkpoints, final_step
    from chatglm_rlhf.reward.ensemble import EnsembleScorer, penalised_reward
    from chatglm_rlhf.reward.scorer import RewardScorer
    from chatglm_rlhf.tasks.demo.judge import GoldReward

    torch.set_num_threads(1)
    run = Path(a.run)
    prompts = read_samples(run / "data" / "dev_prompts.jsonl", strict=True)[0]
    members = sorted((run / "models").glob("ens_[0-9]*"))
    if len(members) < 2:
        raise SystemExit(f"{run}: needs >= 2 models/ens_<m> (run with ablations=[pessimistic])")
    ens = EnsembleScorer([RewardScorer.from_pretrained(str(m)) for m in members])
    proxy, gold = RewardScorer.from_pretrained(str(run / "models" / "rm")), GoldReward()
    tok = load_tokenizer(str(run / "models" / "sft"))
    gen = EvalGeneration(max_new_tokens=48, greedy=True, batch_size=64)
    pdir = run / "models" / a.policy
    models = [
        ("sft", run / "models" / "sft"),
        *((f"step {s}", d) for s, d in checkpoints(pdir, final_step(pdir))),
    ]
    rows, answers = [], {}
    for name, folder in models:
        resp, _ = generate_responses(
            load_causal_lm(str(folder), dtype="fp32", device="cpu"), tok, prompts, gen
        )
        table = ens.score_members(prompts, resp)
        answers[name] = (resp, table, proxy.score(prompts, resp), gold.score(prompts, resp))
        mean = table.mean(0)
        rows.append(f"{name:>8}: members' mean {mean.mean().item():.3f} (spread over answers "
                    f"{mean.std(correction=0).item():.3f}), std {table.std(0, correction=0).mean().item():.3f}, "
                    f"proxy {statistics.fmean(answers[name][2]):.3f}, gold {statistics.fmean(answers[name][3]):.3f}")  # fmt: skip
    print("\n".join(rows))
    for lam in [float(x) for x in a.lams.split(",")]:
        groups, proxy_groups = [], []
        for i in range(len(prompts)):
            seen: dict[str, tuple[float, float, float]] = {}
            for resp, table, prox, gl in answers.values():
                seen.setdefault(resp[i], (penalised_reward(table[:, i : i + 1], lam).item(), prox[i], gl[i]))
            groups.append([(r, g) for r, _, g in seen.values()])
            proxy_groups.append([(p, g) for _, p, g in seen.values()])
        print(
            f"lam {lam:g}: pairs ordered as gold by mean - lam x std {pair_accuracy(groups):.3f}, "
            f"by the proxy RM {pair_accuracy(proxy_groups):.3f}"
        )


if __name__ == "__main__":
    main()
