"""Best-of-n ceilings: how far a policy can get by only *choosing among* the SFT model's own answers.

RLHF mostly re-weights what the SFT model can already say. Sample ``n`` answers per held-out prompt
from the SFT model, pick one per prompt, and compare it with the SFT model's greedy answer under the
gold judge (win rate, ties half):

* **gold pick**: the answer the gold judge likes best. An upper bound for any re-ranking of these
  samples; when it is low, the SFT model rarely says anything better and no reward model can help.
* **RM pick**: the answer the reward model scores highest. What the RM's ranking is worth; when it is
  far below the gold pick, the RM (not the optimiser) limits PPO and DPO, since both climb the RM.

The math is pure functions over score matrices (``scores[k][i]``: sample ``k`` of prompt ``i``) so it is
tested on hand-made numbers; :func:`best_of_n_ceiling` only generates, scores and calls them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chatglm_rlhf.evaluate.judges import verdict_from_scores
from chatglm_rlhf.evaluate.winrate import count

Matrix = Sequence[Sequence[float]]  # [sample k][prompt i]


def pick_best(pick_by: Matrix, n: int) -> list[int]:
    """Per prompt, the index (< ``n``) of the sample ``pick_by`` rates highest; the first on ties."""
    if not 1 <= n <= len(pick_by):
        raise ValueError(f"n must be in [1, {len(pick_by)}] (the samples per prompt), got {n}")
    prompts = len(pick_by[0])
    return [max(range(n), key=lambda k: (pick_by[k][i], -k)) for i in range(prompts)]


def ceiling_rows(
    gold: Matrix, rm: Matrix, baseline: Sequence[float], ns: Sequence[int], tie_margin: float
) -> list[dict[str, Any]]:
    """One row per ``n``: win rate and mean gold score of the gold pick and of the RM pick."""
    if len(gold) != len(rm):
        raise ValueError(f"{len(gold)} gold sample rows but {len(rm)} RM rows")
    if len(gold[0]) != len(baseline):
        raise ValueError(f"{len(gold[0])} prompts in the samples but {len(baseline)} baseline scores")
    rows = []
    for n in ns:
        row: dict[str, Any] = {"n": n}
        for name, by in (("gold_pick", gold), ("rm_pick", rm)):
            chosen = [gold[k][i] for i, k in enumerate(pick_best(by, n))]
            verdicts = [verdict_from_scores(a, b, tie_margin) for a, b in zip(chosen, baseline)]
            row[f"{name}_win_rate"] = count(verdicts).win_rate
            row[f"{name}_score"] = sum(chosen) / len(chosen) if chosen else float("nan")
        rows.append(row)
    return rows


def by_category(
    gold: Matrix, rm: Matrix, baseline: Sequence[float], categories: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Mean gold score per category of SFT greedy, the gold pick and the RM pick (all samples)."""
    n = len(gold)
    picks = {"gold_pick": pick_best(gold, n), "rm_pick": pick_best(rm, n)}
    out: dict[str, dict[str, float]] = {}
    for cat in sorted(set(categories)):
        idx = [i for i, c in enumerate(categories) if c == cat]
        row = {"n": len(idx), "sft_greedy_score": sum(baseline[i] for i in idx) / len(idx)}
        for name, chosen in picks.items():
            row[f"{name}_score"] = sum(gold[chosen[i]][i] for i in idx) / len(idx)
        out[cat] = row
    return out


def best_of_n_ceiling(
    sft,
    tokenizer,
    prompts,
    scorer,
    judge,
    sampling,
    greedy,
    n: int = 8,
    max_prompt_tokens: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Sample ``n`` answers per prompt (``sampling``), score them with the gold ``judge`` and the RM
    ``scorer``: ``{"n", "sft_greedy_score", "rows"}`` (rows for n = 1, 2, 4, ... up to ``n``) and
    ``"by_category"`` (mean gold scores at ``n``)."""
    from chatglm_rlhf.evaluate.evaluate import generate_responses
    from chatglm_rlhf.tasks.demo.judge import TIE_MARGIN

    def gold_scores(responses: list[str]) -> list[float]:
        return [s.total for s in judge.score_many(prompts, responses)]

    base = gold_scores(generate_responses(sft, tokenizer, prompts, greedy, max_prompt_tokens)[0])
    gold, rm = [], []
    for k in range(n):  # one call per sample index: every prompt gets the same seed schedule
        answers = generate_responses(sft, tokenizer, prompts, sampling, max_prompt_tokens, seed=seed + k)[0]
        gold.append(gold_scores(answers))
        rm.append(scorer.score(prompts, answers))
    ns = sorted({*(2**j for j in range(n.bit_length())), n})  # 1, 2, 4, ... and n itself
    return {
        "n": n,
        "sft_greedy_score": sum(base) / len(base) if base else float("nan"),
        "rows": ceiling_rows(gold, rm, base, ns, TIE_MARGIN),
        "by_category": by_category(gold, rm, base, [p.category or "(none)" for p in prompts]),
    }
