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
       seed: int = 0, backbone: str | None = None, progress: bool | None = None) -> dict[str, Any]:  # fmt: skip
    """Train reward model ``models/<name>`` from ``init`` on ``train`` (a path in the run folder).

    Held-out pairs: with ``eval_fraction`` > 0 a share of the training file's prompts (split by prompt,
    so eval prompts are never trained on); else the task's ``data/rm_eval.jsonl``. With a gold judge the
    RM is also checked against it (gold accuracy, length correlation on gold ties, a scatter of reward vs
    length, the task's own probes); with ``data/heldout.jsonl``, its accuracy on those pairs.
    """
    from chatglm_rlhf.data.formats import load_comparisons
    from chatglm_rlhf.data.io import write_jsonl
    from chatglm_rlhf.reward.stages import run_rm_stage, split_by_prompt

    train_path, eval_path = ctx.out / train, ctx.data / "rm_eval.jsonl"
    held = None
    if eval_fraction > 0:
        comps, _ = load_comparisons(train_path)
        train_part, held = split_by_prompt(comps, eval_fraction=eval_fraction, seed=seed)
        train_path, eval_path = ctx.out / name / "train.jsonl", ctx.out / name / "eval.jsonl"
        write_jsonl(train_path, train_part)
        write_jsonl(eval_path, held)
    if progress is not None:
        cfg = dataclasses.replace(cfg, progress=progress)
    gold_fn = ctx.gold_fn if ctx.gold() is not None else None
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


def judge_rm(ctx: RunContext, cfg, init: str | Path, backbone: str, progress: bool) -> dict[str, Any]:
    """The judge RM: trained on ``data/judge_train.jsonl`` only and never optimised against; plus how
    often it orders the rm_eval pairs like the proxy (low agreement: a genuinely different opinion)."""
    from chatglm_rlhf.evaluate.agreement import sign_agreement

    m = rm(ctx, "judge_rm", "data/judge_train.jsonl", cfg, init, backbone=backbone, progress=progress)
    pairs = ctx.comparisons("rm_eval")
    diffs = []
    for name in ("rm", "judge_rm"):
        r_a, r_b = ctx.scorer(name).score_comparisons(pairs)
        diffs.append([a - b for a, b in zip(r_a, r_b)])
    m["agreement_with_proxy_rm_eval"] = sign_agreement(*diffs)
    return m
