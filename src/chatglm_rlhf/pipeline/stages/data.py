"""Data stages: the task writes its files; SFT candidates are judged or collected for annotation."""

from __future__ import annotations

from typing import Any

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.pipeline.context import RunContext


def data(ctx: RunContext) -> dict[str, Any]:
    """The task's files under ``data/`` (see tasks/base.py)."""
    ctx.data.mkdir(parents=True, exist_ok=True)
    return ctx.task.write_data(ctx.data)


def sft_eval(ctx: RunContext, generation, seed: int, progress: bool = True) -> dict[str, Any]:
    """Gold score of one sampled SFT answer per held-out prompt (tasks with a gold judge)."""
    from chatglm_rlhf.collect.generate import generate_candidates
    from chatglm_rlhf.data.io import write_jsonl

    judge = ctx.gold()
    if judge is None:
        raise UserError(f"sft_eval: task {ctx.task.name} has no gold judge")
    model, tok = ctx.load("sft")
    out = generate_candidates(
        model, tok, ctx.samples("eval_prompts"), 1, generation, seed=seed, progress=progress
    )
    write_jsonl(ctx.data / "sft_eval_samples.jsonl", out)
    scores = [judge.score(s, s.responses[0]).total for s in out]
    per_cat: dict[str, list[float]] = {}
    for s, sc in zip(out, scores):
        per_cat.setdefault(s.category or "none", []).append(sc)
    return {
        "gold_score": sum(scores) / len(scores),
        "gold_score_by_category": {c: sum(v) / len(v) for c, v in sorted(per_cat.items())},
    }


def _candidates(ctx: RunContext, k: int, generation, seed: int, progress: bool, n_prompts: int = 0):
    from chatglm_rlhf.collect.generate import generate_candidates
    from chatglm_rlhf.data.io import write_jsonl

    model, tok = ctx.load("sft")
    prompts = ctx.samples("pref_prompts")
    cands = generate_candidates(
        model, tok, prompts[:n_prompts] if n_prompts else prompts, k, generation, seed=seed, progress=progress
    )
    write_jsonl(ctx.data / "candidates.jsonl", cands)
    return cands


def collect(ctx: RunContext, k: int, overlap: int, generation, seed: int, progress: bool = True,
            n_prompts: int = 0) -> dict:  # fmt: skip
    """k SFT samples per preference prompt (the first ``n_prompts`` when > 0), compared pairwise by the
    task's (simulated) annotators."""
    from chatglm_rlhf.data.formats import write_trl
    from chatglm_rlhf.data.io import write_jsonl

    pool = ctx.task.annotators()
    if pool is None:
        raise UserError(f"collect: task {ctx.task.name} has no annotators (use the generate stage)")
    comparisons = pool.annotate(_candidates(ctx, k, generation, seed, progress, n_prompts), overlap=overlap)
    write_jsonl(ctx.data / "comparisons.jsonl", comparisons)
    written, ties = write_trl(ctx.data / "comparisons.trl.jsonl", comparisons)
    labels = {lab: sum(x.label == lab for x in comparisons) for lab in ("a", "b", "tie")}
    return {
        "comparisons": len(comparisons),
        "labels": labels,
        "trl_written": written,
        "trl_ties_skipped": ties,
    }


def generate(ctx: RunContext, k: int, generation, seed: int, progress: bool = True) -> dict[str, Any]:
    """k SFT candidates per preference prompt for people to compare in the annotation app.

    The stage finishes (its marker is written), then the run stops with the commands to run; the
    exported comparisons go to ``data/comparisons.jsonl`` and ``--from split`` resumes.
    """
    cands = _candidates(ctx, k, generation, seed, progress)
    return {"candidates": len(cands), "k": k, "awaiting_annotation": True}


def awaiting_annotation(ctx: RunContext) -> str | None:
    """After ``generate``: the commands to run while ``data/comparisons.jsonl`` does not exist yet."""
    if (ctx.data / "comparisons.jsonl").exists():
        return None
    db = ctx.out / "annotate.db"
    overlap = getattr(ctx.cfg, "overlap", 3)
    # With later rounds in the same project, round 1's export must leave their comparisons out.
    only = " --round 1" if getattr(ctx.cfg, "rounds", 1) > 1 else ""
    return "\n".join([
        "the candidates are ready for annotation; run:",
        f"  chatglm-rlhf annotate load {ctx.data / 'candidates.jsonl'} --project run --overlap {overlap} --db {db}",
        f"  chatglm-rlhf annotate user add NAME --role annotator --generate-password --db {db}",
        f"  chatglm-rlhf annotate serve --db {db}",
        f"  chatglm-rlhf annotate export --project run{only} --db {db} -o {ctx.data / 'comparisons.jsonl'}",
        "then resume the run with --from split",
    ])  # fmt: skip
