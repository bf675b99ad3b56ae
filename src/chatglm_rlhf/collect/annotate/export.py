"""Annotations -> :class:`Comparison` records (our JSONL) and TRL preference files.

``response_a``/``response_b`` are always in canonical pair order (response index i < j in the
candidates file), and ``label``/``strength``/``scores`` refer to that order. What the annotator saw
(the display order) and everything else the app recorded go into ``meta``, with the feedback round
of the sample's batch (``round``) and, where the batch said, the model that wrote each answer
(``model_a`` / ``model_b``: from the sample's ``meta.models``, one per response, or ``meta.model``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatglm_rlhf.collect.annotate.models import Annotation, Item, Project, Sample, User
from chatglm_rlhf.data.schema import Comparison, Turn
from chatglm_rlhf.errors import UserError

FORMATS = ("ours", "trl", "trl-conversational")


def answer_models(item: Item, sample: Sample) -> dict:
    """``model_a`` / ``model_b``: who wrote the pair's answers, when the loaded sample says (else {})."""
    meta = sample.meta or {}
    models = meta.get("models")
    if isinstance(models, list) and len(models) == len(sample.responses):
        return {"model_a": models[item.idx_a], "model_b": models[item.idx_b]}
    if isinstance(meta.get("model"), str):
        return {"model_a": meta["model"], "model_b": meta["model"]}
    return {}


def _meta(ann: Annotation, item: Item, sample: Sample, project: Project) -> dict:
    # display_order: which canonical response was shown left ("Response A") and right.
    return {
        "project": project.name,
        "round": sample.round,
        **answer_models(item, sample),
        "annotation_id": ann.id,
        "pair": [item.idx_a, item.idx_b],
        "display_order": ["b", "a"] if ann.swapped else ["a", "b"],
        "choice_5pt": ann.choice,  # canonical: 1 = a much better, 3 = tie, 5 = b much better
        "rationale": ann.rationale,
        "flags": list(ann.flags or []),
        "time_spent_s": None if ann.time_spent_ms is None else ann.time_spent_ms / 1000.0,
        "skipped": bool(ann.skipped),
        "sample_meta": dict(sample.meta or {}),
    }


def to_comparison(ann: Annotation, item: Item, sample: Sample, user: User, project: Project) -> Comparison:
    return Comparison(
        sample_id=sample.sample_id,
        prompt=sample.prompt,
        response_a=sample.responses[item.idx_a],
        response_b=sample.responses[item.idx_b],
        # A skip has no judgement; it is exported (only on request) as a "tie" with meta.skipped = true.
        label=ann.label or "tie",
        history=[Turn(t["role"], t["content"]) for t in sample.history],
        strength=ann.strength,
        scores=ann.scores,
        annotator=user.username,
        time=ann.created_at.isoformat(),
        category=sample.category,
        meta=_meta(ann, item, sample, project),
    )


EXPORT_BATCH = 1000  # rows fetched at a time (a server-side cursor on PostgreSQL)


def iter_comparisons(
    s: Session, project: Project, include_skipped: bool = False, round_: int | None = None
) -> Iterator[Comparison]:
    """Every raw annotation of the project (one record per annotator and pair), oldest first, fetched
    EXPORT_BATCH rows at a time: an export of any size holds one batch, not the whole project.
    ``round_``: only that feedback round's (a round's comparisons go to their own file)."""
    q = (
        select(Annotation, Item, Sample, User)
        .join(Item, Item.id == Annotation.item_id)
        .join(Sample, Sample.id == Item.sample_pk)
        .join(User, User.id == Annotation.user_id)
        .where(Annotation.project_id == project.id)
        .order_by(Annotation.id)
        .execution_options(yield_per=EXPORT_BATCH)
    )
    if not include_skipped:
        q = q.where(Annotation.skipped.is_(False))
    if round_ is not None:
        q = q.where(Sample.round == round_)
    # The identity map holds loaded rows weakly: each batch is freed once its records are written.
    for a, i, smp, u in s.execute(q):
        yield to_comparison(a, i, smp, u, project)


def comparisons(
    s: Session, project: Project, include_skipped: bool = False, round_: int | None = None
) -> list[Comparison]:
    """:func:`iter_comparisons` as a list (for small projects and tests)."""
    return list(iter_comparisons(s, project, include_skipped, round_))


def write(path: str | Path, records: Iterable[Comparison], fmt: str) -> tuple[int, int]:
    """Write ``records`` (streamed) in ``fmt``; returns (written, left out). TRL files cannot hold ties
    or skips."""
    from chatglm_rlhf.data.io import write_jsonl

    if fmt == "ours":
        return write_jsonl(path, records), 0
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {FORMATS}, got {fmt!r}")
    try:
        from chatglm_rlhf.data.formats import write_trl
    except ImportError as e:  # the formats module is another stage's; say so instead of crashing
        raise UserError(f"TRL export needs chatglm_rlhf.data.formats.write_trl ({e})") from e
    skipped = 0

    def kept() -> Iterator[Comparison]:
        nonlocal skipped
        for c in records:
            if c.meta.get("skipped"):
                skipped += 1
            else:
                yield c

    written, ties = write_trl(path, kept(), conversational=fmt == "trl-conversational")
    return written, ties + skipped
