"""Feedback rounds that people annotate (the files profile): a round's batch, the pause, the merge.

Round r >= 2 runs as the demo's (pipeline/stages/rounds.py) with its collect step in two stages and
the run paused between them, as the files profile's ``generate`` pauses for round 1:

    batch_r<r>   the current policy answers the round's prompts k times; the pairs to annotate are
                 chosen under ``round.budget`` (rounds.answer_round) and written as the round's batch,
                 ``data/batch_r<r>.jsonl`` (collect/batch.py); the run stops with the annotate commands
    merge_r<r>   (``--from merge_r<r>``) the exported ``data/comparisons_r<r>.jsonl``, checked against
                 the batch (each comparison one of its pairs, none from another round), joins every
                 earlier round's in ``data/comparisons_upto_r<r>.jsonl``

Then filter_r<r>, rm_r<r> and ppo_r<r> as in the demo. The round's prompts never include a context
the split held out (heldout, dev, judge_train, the evaluation prompts): those stay unseen.
"""

from __future__ import annotations

import json
from typing import Any

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.pipeline.context import RunContext

DB = "annotate.db"  # the run's annotation database (the files profile's default; --db may name another)
PROJECT = "run"


def round_prompts(ctx: RunContext, settings) -> tuple[list, int]:
    """(the round's prompts, how many were left out): ``data/<round.prompts>.jsonl`` less any prompt
    whose context a held-out part holds (``data/split.json``)."""
    from chatglm_rlhf.data.splits import context_key

    record = json.loads((ctx.data / "split.json").read_text())["contexts"]
    held = {c for k in ("heldout", "dev", "judge_train", "eval_prompts") for c in record.get(k, [])}
    prompts = ctx.samples(settings.prompts)
    kept = [p for p in prompts if context_key(p) not in held]
    if not kept:
        raise UserError(
            f"round.prompts: every prompt of data/{settings.prompts}.jsonl is held out ({len(prompts)})"
        )
    return kept, len(prompts) - len(kept)


def batch(ctx: RunContext, r: int, policy: str, rm: str, members: list[str], settings, overlap: int,
          generation, seed: int, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Round ``r``'s batch for the annotation app: ``settings.budget // overlap`` pairs of ``policy``'s
    answers, each sample saying its round, its pairs and the model that wrote each answer."""
    from chatglm_rlhf.collect.batch import batch_records
    from chatglm_rlhf.data.io import write_jsonl
    from chatglm_rlhf.pipeline.stages.rounds import answer_round

    prompts, held = round_prompts(ctx, settings)
    cands, sel, out = answer_round(ctx, r, policy, rm, members, settings, settings.budget // overlap, generation,
                                   seed, progress, prompts)  # fmt: skip
    records = batch_records(cands, sel, round_=r, model=policy)
    write_jsonl(ctx.data / f"batch_r{r}.jsonl", records)
    out.update(batch_samples=len(records), prompts_held_out=held, awaiting_annotation=True)
    return out


def awaiting(ctx: RunContext, r: int) -> str | None:
    """After ``batch_r<r>``: the commands to run while ``data/comparisons_r<r>.jsonl`` does not exist."""
    if (ctx.data / f"comparisons_r{r}.jsonl").exists():
        return None
    db, path = ctx.out / DB, ctx.data / f"batch_r{r}.jsonl"
    pairs = sum(
        len(json.loads(line)["meta"]["pairs"]) for line in path.read_text().splitlines() if line.strip()
    )
    return "\n".join([
        f"round {r}'s {pairs} pairs of the current policy's answers are ready for annotation; run:",
        f"  chatglm-rlhf annotate load {path} --project {PROJECT} --db {db}",
        f"  chatglm-rlhf annotate serve --db {db}",
        f"  chatglm-rlhf annotate stats --project {PROJECT} --db {db}",
        f"  chatglm-rlhf annotate export --project {PROJECT} --round {r} --db {db} "
        f"-o {ctx.data / f'comparisons_r{r}.jsonl'}",
        f"then resume the run with --from merge_r{r}",
    ])  # fmt: skip


def _check(comps: list, pairs: dict, r: int, path, batch_path) -> None:
    """Every comparison one of the batch's pairs and of round ``r``, or a one-line error naming the file:
    a comparison counted in the wrong round would train the RM on what it was never asked."""
    wrong = [(n, c.meta["round"]) for n, c in enumerate(comps, 1) if c.meta.get("round", r) != r]
    if wrong:
        raise UserError(
            f"{path}: {len(wrong)} comparisons of another round (line {wrong[0][0]}: round {wrong[0][1]}); "
            f"export round {r}'s alone: annotate export --round {r} ..."
        )
    unknown = [n for n, c in enumerate(comps, 1) if _find(pairs, c) is None]
    if unknown:
        raise UserError(
            f"{path}: {len(unknown)} comparisons are not pairs of {batch_path} (line {unknown[0]})"
        )


def _find(pairs: dict, c) -> tuple[dict, bool] | None:
    """The batch pair ``c`` compares and whether its answers are in the other order, else None."""
    info = pairs.get((c.sample_id, c.response_a, c.response_b))
    if info is not None:
        return info, False
    info = pairs.get((c.sample_id, c.response_b, c.response_a))
    return None if info is None else (info, True)


def merge(ctx: RunContext, r: int, first: str = "rm_train") -> dict[str, Any]:
    """Round ``r``'s exported comparisons, checked against its batch, merged with every earlier round's
    (round 1's: ``data/<first>.jsonl``) for ``filter_r<r>``."""
    from chatglm_rlhf.collect.batch import batch_pairs
    from chatglm_rlhf.data.formats import load_comparisons
    from chatglm_rlhf.data.io import read_samples
    from chatglm_rlhf.pipeline.stages.rounds import merge_rounds

    path, batch_path = ctx.data / f"comparisons_r{r}.jsonl", ctx.data / f"batch_r{r}.jsonl"
    if not path.exists():
        raise UserError(f"{path} is missing: export round {r}'s annotations there (annotate export --round {r}), "
                        f"then --from merge_r{r}")  # fmt: skip
    comps, report = load_comparisons(path)
    report.print()
    if not comps:
        raise UserError(f"{path}: no comparisons (annotate round {r}'s batch, then export it)")
    pairs = batch_pairs(read_samples(batch_path, strict=True)[0])
    _check(comps, pairs, r, path, batch_path)
    done = set()
    for c in comps:
        info, flipped = _find(pairs, c)
        a, b = info.get("model_a"), info.get("model_b")
        c.meta["round"] = r
        c.meta.setdefault("model_a", b if flipped else a)  # who wrote this comparison's answer a
        c.meta.setdefault("model_b", a if flipped else b)
        done.add((c.sample_id, *sorted((c.response_a, c.response_b))))
    out = {"round": r, "batch_pairs": len(pairs), "pairs_annotated": len(done),
           "pairs_unannotated": len(pairs) - len(done), "annotators": len({c.annotator for c in comps})}  # fmt: skip
    if out["pairs_unannotated"]:  # not an error (people may stop early), but never unsaid
        print(
            f"[merge_r{r}] {out['pairs_unannotated']} of the batch's {len(pairs)} pairs have no comparison in {path}"
        )
    out.update(merge_rounds(ctx, r, comps, first))
    return out
