"""Feedback rounds: round r >= 2 annotates the current policy's own answers.

Round 1 is the usual run (SFT answers -> comparisons -> filter -> RM -> PPO). In a later round the
round's policy answers the preference prompts ``k`` times, the pairs to annotate are chosen under the
round's budget (``select``: random, or the pairs an ensemble of bootstrap reward models is least sure
about), annotated, and added to every earlier round's comparisons; the profile then filters them all,
trains a new reward model and continues the policy (pipeline/profiles: ``rounds``). A reward model
trained on SFT answers is blind where the policy goes next: this stage also measures that, as the
previous RM's gold accuracy on the policy's own answers (``rm_on_policy_gold_accuracy``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.pipeline.context import RunContext


def upto_name(r: int, first: str = "comparisons") -> str:
    """The comparisons of rounds 1..r, the file a round's filter reads (round 1: ``first``, the file the
    profile's first filter reads: the demo's ``comparisons``, the files profile's ``rm_train``)."""
    return first if r == 1 else f"comparisons_upto_r{r}"


def on_policy_accuracy(ctx: RunContext, cands, pairs, scores) -> dict[str, Any]:
    """The RM's agreement with gold on the policy's own answer pairs that gold decides (``scores``: the
    RM's score of every candidate answer, flat in candidate order)."""
    from chatglm_rlhf.collect.batch import answer_offsets

    off, right, decided = answer_offsets(cands), 0, 0
    for si, i, j in pairs:
        s = cands[si]
        gold = ctx.gold_fn(s, s.responses[i], s.responses[j])
        if gold == "tie":
            continue
        decided += 1
        rm_says = "a" if scores[off[si] + i] > scores[off[si] + j] else "b"
        right += rm_says == gold
    return {"rm_on_policy_gold_accuracy": right / decided if decided else None, "gold_decided_pairs": decided}


def agreement(comps) -> float | None:
    """Mean majority share of the pairs judged more than once (1.0: every annotator of a pair agreed)."""
    from collections import defaultdict

    from chatglm_rlhf.reward import aggregation as agg

    votes: dict[tuple, list[str]] = defaultdict(list)
    for c in comps:
        votes[agg.pair_key(c)].append(agg.canonical_label(c))
    shares = [agg.majority(v)[1] for v in votes.values() if len(v) > 1]
    return sum(shares) / len(shares) if shares else None


def answer_round(ctx: RunContext, r: int, policy: str, rm: str, members: list[str], settings, n_pairs: int,
                 generation, seed: int, progress: bool, prompts) -> tuple[list, Any, dict[str, Any]]:  # fmt: skip
    """Round ``r``'s candidates and pairs: ``policy`` answers ``prompts`` ``settings.k`` times (written to
    ``data/candidates_r<r>.jsonl``) and up to ``n_pairs`` pairs are chosen (collect/batch.py: random, or
    the ensemble ``members``' least sure). Returns (candidates, selection, metrics)."""
    from chatglm_rlhf.collect.batch import answer_scores, choose
    from chatglm_rlhf.collect.generate import generate_candidates
    from chatglm_rlhf.data.io import write_jsonl

    model, tok = ctx.load(policy)
    cands = generate_candidates(model, tok, prompts, settings.k, generation, seed=seed, progress=progress)
    del model
    write_jsonl(ctx.data / f"candidates_r{r}.jsonl", cands)
    sel = choose(cands, n_pairs, settings.select, (ctx.scorer(m) for m in members), settings.uncertainty,
                 seed=seed, per_sample=settings.per_prompt)  # fmt: skip
    out: dict[str, Any] = {
        "round": r,
        "policy": policy,
        "candidates": len(cands),
        "candidate_pairs": len(sel.pairs),
    }
    if ctx.gold() is not None:  # how blind the current RM is on this policy's answers (before retraining)
        out.update(
            on_policy_accuracy(ctx, cands, sel.pairs, answer_scores([ctx.scorer(rm)], cands)[0].tolist())
        )
    out.update(selected_pairs=len(sel.chosen), select=settings.select, budget=settings.budget)
    if sel.scores is not None:
        chosen = sel.chosen_scores()
        out["uncertainty_selected_mean"] = sum(chosen) / len(chosen) if chosen else None
        out["uncertainty_all_mean"] = sum(sel.scores) / len(sel.scores) if sel.scores else None
    return cands, sel, out


def merge_rounds(ctx: RunContext, r: int, comps: list, first: str = "comparisons") -> dict[str, Any]:
    """Every round's comparisons up to ``r`` (``comps``: round r's) into ``data/comparisons_upto_r<r>.jsonl``,
    the file ``filter_r<r>`` reads; round 1's get round 1 and model sft where their meta does not say."""
    from chatglm_rlhf.data.formats import load_comparisons
    from chatglm_rlhf.data.io import write_jsonl

    earlier = load_comparisons(ctx.data / f"{upto_name(r - 1, first)}.jsonl")[0]
    for c in earlier:  # round 1's comparisons predate the round fields: SFT wrote both answers
        c.meta.setdefault("round", 1)
        c.meta.setdefault("model_a", "sft")
        c.meta.setdefault("model_b", "sft")
    write_jsonl(ctx.data / f"{upto_name(r)}.jsonl", [*earlier, *comps])
    return {
        "comparisons": len(comps),
        "comparisons_total": len(earlier) + len(comps),
        "labels": {lab: sum(c.label == lab for c in comps) for lab in ("a", "b", "tie")},
        "annotator_agreement": agreement(comps),
    }


def collect_round(ctx: RunContext, r: int, policy: str, rm: str, members: list[str], settings, overlap: int,
                  generation, seed: int, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Round ``r``: ``policy`` answers, pairs chosen under ``settings.budget`` comparisons, annotated by the
    task's annotators (``overlap`` each), written to ``data/comparisons_r<r>.jsonl`` and, with every
    earlier round's, to ``data/comparisons_upto_r<r>.jsonl``. Every comparison's meta says its round and
    the model that wrote each answer."""
    from chatglm_rlhf.data.io import write_jsonl

    pool = ctx.task.annotators()
    if pool is None:
        raise UserError(f"rounds: task {ctx.task.name} has no annotators (rounds need the demo world's)")
    cands, sel, out = answer_round(ctx, r, policy, rm, members, settings, settings.budget // overlap, generation,
                                   seed, progress, ctx.samples(settings.prompts))  # fmt: skip
    comps = []
    for si, i, j in sel.chosen:
        s = cands[si]
        two = dataclasses.replace(s, responses=[s.responses[i], s.responses[j]])
        for c in pool.annotate([two], overlap=overlap):
            ia_, ib_ = ((i, j)[c.meta["index_a"]], (i, j)[c.meta["index_b"]])
            c.meta.update(pair=[i, j], index_a=ia_, index_b=ib_, round=r, model_a=policy, model_b=policy)
            comps.append(c)
    write_jsonl(ctx.data / f"comparisons_r{r}.jsonl", comps)
    out.update(merge_rounds(ctx, r, comps))
    return out
