"""Reward stages: post-filtering, the proxy reward model, and the judge RM (gold's stand-in)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from chatglm_rlhf.pipeline.context import RunContext


def filter_(ctx: RunContext, name: str, source: str, cfg, balance: str | None = None) -> dict[str, Any]:
    """Filter ``data/<source>.jsonl`` into ``<name>/filtered.jsonl`` (``balance`` overrides the config's,
    for the length-balancing ablation). With a gold judge, labels are also checked against gold."""
    from chatglm_rlhf.reward.stages import run_filter_stage

    cfg = dataclasses.replace(cfg, balance=balance or cfg.balance)
    gold_fn = ctx.gold_fn if ctx.gold() is not None else None
    return run_filter_stage(ctx.data / f"{source}.jsonl", ctx.out / name, cfg, gold_fn=gold_fn)


def rm(ctx: RunContext, name: str, train: str, cfg, init: str | Path, eval_fraction: float = 0.0,
       seed: int = 0, backbone: str | None = None, progress: bool | None = None,
       bootstrap: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Train reward model ``models/<name>`` from ``init`` on ``train`` (a path in the run folder).

    Held-out pairs: with ``eval_fraction`` > 0 a share of the training file's prompts (split by prompt,
    so eval prompts are never trained on); else the task's ``data/rm_eval.jsonl``. With a gold judge the
    RM is also checked against it (gold accuracy, length correlation on gold ties, a scatter of reward vs
    length, the task's own probes); with ``data/heldout.jsonl``, its accuracy on those pairs.
    ``bootstrap``: an ensemble member: the training pairs resampled with replacement (that seed).
    """
    from chatglm_rlhf.data.formats import load_comparisons
    from chatglm_rlhf.data.io import write_jsonl
    from chatglm_rlhf.pipeline.runner import trainer_config
    from chatglm_rlhf.reward.stages import run_rm_stage, split_by_prompt

    train_path, eval_path = ctx.out / train, ctx.data / "rm_eval.jsonl"
    held = None
    if eval_fraction > 0 or bootstrap is not None:
        train_part, _ = load_comparisons(train_path)
        if eval_fraction > 0:
            train_part, held = split_by_prompt(train_part, eval_fraction=eval_fraction, seed=seed)
            eval_path = ctx.out / name / "eval.jsonl"
            write_jsonl(eval_path, held)
        if bootstrap is not None:
            from chatglm_rlhf.reward.ensemble import bootstrap_indices

            train_part = [train_part[i] for i in bootstrap_indices(len(train_part), 1, seed=bootstrap)[0]]
        train_path = ctx.out / name / "train.jsonl"
        write_jsonl(train_path, train_part)
    if progress is not None:
        cfg = dataclasses.replace(cfg, progress=progress)
    gold_fn = ctx.gold_fn if ctx.gold() is not None else None
    cfg = trainer_config(cfg, ctx.models / name)  # resume after a kill; else no stale checkpoints
    m = run_rm_stage(init, train_path, eval_path, ctx.models / name, cfg, gold_fn=gold_fn)
    if backbone is not None:
        m["backbone"] = backbone
    if gold_fn is not None:
        held = held if held is not None else load_comparisons(eval_path)[0]
        m["scatter"] = _scatter(ctx, name, held)
        if hasattr(ctx.task, "rm_probes"):
            m.update(ctx.task.rm_probes(ctx.scorer(name), ctx.samples("eval_prompts")))
        from chatglm_rlhf.evaluate.health import weak_rm_warnings

        for line in weak_rm_warnings(name, m):  # the terminal says what the report's flags say
            print(f"[{name}] warning: {line}")
    if (ctx.data / "heldout.jsonl").exists():
        # heldout's pairs: never trained on by any RM (their contexts are the evaluation prompts).
        from chatglm_rlhf.evaluate.agreement import preference_accuracy

        pairs = ctx.comparisons("heldout")
        r_a, r_b = ctx.scorer(name).score_comparisons(pairs)
        m["heldout"] = preference_accuracy(r_a, r_b, [c.label for c in pairs])
        if gold_fn is None:  # no gold: these human pairs are the only check on a judge's worth
            from chatglm_rlhf.evaluate.health import weak_judge_warnings

            for line in weak_judge_warnings(name, m):
                print(f"[{name}] warning: {line}")
    return m


def _scatter(ctx: RunContext, name: str, held) -> str:
    """(response length in words, reward) for every held-out response: the report's scatter plot."""
    from chatglm_rlhf.data.io import write_jsonl

    scorer = ctx.scorer(name)
    samples = [c.sample() for c in held for _ in (0, 1)]
    responses = [r for c in held for r in (c.response_a, c.response_b)]
    rewards = scorer.score(samples, responses) if responses else []
    path = ctx.out / name / "scatter.jsonl"
    write_jsonl(path, [{"length": len(r.split()), "reward": x} for r, x in zip(responses, rewards)])
    return str(path.relative_to(ctx.out))


def judge_name(i: int) -> str:
    """The i-th judge RM's model name (0-based): judge_rm, judge_rm_2, judge_rm_3, ..."""
    return "judge_rm" if i == 0 else f"judge_rm_{i + 1}"


def judge_share(comps: list, share: int, shares: int, seed: int) -> list:
    """Judge ``share``'s part of judge_train: ``shares`` disjoint parts of about equal size, split by
    dialogue context (no context in two judges' data), the same for every judge of a run."""
    from chatglm_rlhf.data.splits import split_comparisons

    parts = split_comparisons(comps, {str(i): 1.0 / shares for i in range(shares)}, seed=seed)
    return parts[str(share)]


def judge_rm(ctx: RunContext, cfg, init: str | Path, backbone: str, progress: bool, share: int = 0,
             shares: int = 1, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """A judge RM, ``judge_name(share)``: trained on its share of ``data/judge_train.jsonl`` only (all of
    it when ``shares`` is 1) and never optimised against; plus how often it orders the rm_eval pairs like
    the proxy (low agreement: a genuinely different opinion)."""
    from chatglm_rlhf.data.io import write_jsonl
    from chatglm_rlhf.evaluate.agreement import sign_agreement

    name, train = judge_name(share), "data/judge_train.jsonl"
    if shares > 1:
        part = judge_share(ctx.comparisons("judge_train"), share, shares, seed)
        train = f"{name}/train.jsonl"
        write_jsonl(ctx.out / train, part)
    m = rm(ctx, name, train, cfg, init, backbone=backbone, progress=progress)
    m["judge_train_share"] = [share + 1, shares]
    pairs = ctx.comparisons("rm_eval")
    diffs = []
    for scorer in ("rm", name):
        r_a, r_b = ctx.scorer(scorer).score_comparisons(pairs)
        diffs.append([a - b for a, b in zip(r_a, r_b)])
    m["agreement_with_proxy_rm_eval"] = sign_agreement(*diffs)
    return m
