"""JSON API for scripts, authenticated with ``Authorization: Bearer <token>`` only.

Sides are named as on the page: ``left`` is "Response A", ``right`` is "Response B"; an annotation read
back is in canonical order (``a`` = the pair's lower response index) with the display order beside it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from chatglm_rlhf.collect.annotate import service
from chatglm_rlhf.collect.annotate.admin_web import export_response
from chatglm_rlhf.collect.annotate.deps import DB, ApiAdmin, ApiUser
from chatglm_rlhf.collect.annotate.models import Annotation, Item, Project, Sample, User
from chatglm_rlhf.collect.annotate.stats import project_stats
from chatglm_rlhf.collect.annotate.web import submit_once
from chatglm_rlhf.data.schema import CRITERIA

router = APIRouter(prefix="/api/v1")


class SubmissionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idempotency_key: str | None = Field(default=None, max_length=64)
    skip: bool = False
    overall: int | None = Field(
        default=None, ge=1, le=5, description="1 = left much better ... 5 = right much better"
    )
    scores: dict[str, dict[str, int]] = Field(
        default_factory=dict, description='{"left": {...}, "right": {...}}'
    )
    rationale: str = Field(default="", max_length=service.MAX_RATIONALE_CHARS)
    flags: list[str] = Field(default_factory=list, max_length=len(service.FLAGS))


def annotation_json(
    ann: Annotation, item: Item, sample: Sample, username: str, project: str
) -> dict[str, Any]:
    return {
        "id": ann.id,
        "assignment_id": ann.assignment_id,
        "project": project,
        "annotator": username,
        "sample_id": sample.sample_id,
        "round": sample.round,
        "pair": [item.idx_a, item.idx_b],
        "display_order": ["b", "a"] if ann.swapped else ["a", "b"],
        "skipped": ann.skipped,
        "label": ann.label,
        "strength": ann.strength,
        "choice_5pt": ann.choice,
        "scores": ann.scores,
        "rationale": ann.rationale,
        "flags": ann.flags,
        "time_spent_s": None if ann.time_spent_ms is None else ann.time_spent_ms / 1000.0,
        "created_at": ann.created_at.isoformat(),
    }


def _annotation_query():
    return (
        select(Annotation, Item, Sample, User.username, Project.name)
        .join(Item, Item.id == Annotation.item_id)
        .join(Sample, Sample.id == Item.sample_pk)
        .join(User, User.id == Annotation.user_id)
        .join(Project, Project.id == Annotation.project_id)
    )


@router.get("/me")
def me(auth: ApiUser) -> dict:
    return {"username": auth.username, "role": auth.role}


@router.get("/projects")
def projects(auth: ApiUser, db: DB) -> list[dict]:
    with db.read() as s:
        return [{"name": p.name, "overlap": p.overlap} for p in service.list_projects(s)]


@router.get("/projects/{name}/next")
def next_item(name: str, auth: ApiUser, db: DB) -> Response:
    """The caller's open item (assigning one if needed); 204 when nothing is left for them."""
    with db.write() as s:
        project = service.get_project(s, name)
        a = service.next_assignment(s, s.get(User, auth.user_id), project)
        if a is None:
            return Response(status_code=204)
        sample = a.item.sample
        left, right = (a.item.idx_b, a.item.idx_a) if a.swapped else (a.item.idx_a, a.item.idx_b)
        body = {
            "assignment_id": a.id,
            "project": project.name,
            "sample_id": sample.sample_id,
            "round": sample.round,
            "history": sample.history,
            "prompt": sample.prompt,
            "left": sample.responses[left],
            "right": sample.responses[right],
            "criteria": list(CRITERIA),
            "guidelines_version": project.guidelines_version,
        }
    return JSONResponse(body)


@router.post("/assignments/{assignment_id}/annotation")
def submit(
    assignment_id: int,
    body: SubmissionIn,
    auth: ApiUser,
    db: DB,
    idempotency_key: str | None = Header(default=None, max_length=64),
) -> JSONResponse:
    """201 with the stored annotation; 200 with the same one when the idempotency key is replayed."""
    key = body.idempotency_key or idempotency_key
    if not key:
        raise service.Invalid("send an idempotency key (Idempotency-Key header or idempotency_key field)")
    sub = service.Submission(
        idempotency_key=key,
        skip=body.skip,
        overall=body.overall,
        scores_left=dict(body.scores.get("left", {})),
        scores_right=dict(body.scores.get("right", {})),
        rationale=body.rationale.strip(),
        flags=list(body.flags),
    )
    if set(body.scores) - {"left", "right"}:
        raise service.Invalid('scores must have the keys "left" and "right"')
    ann_id, created = submit_once(db, auth.user_id, assignment_id, sub)
    return JSONResponse(_read_annotation(db, auth, ann_id), status_code=201 if created else 200)


def _read_annotation(db, auth, annotation_id: int) -> dict:
    with db.read() as s:
        row = s.execute(_annotation_query().where(Annotation.id == annotation_id)).first()
        if row is None:
            raise service.NotFound(f"no annotation {annotation_id}")
        ann, item, sample, username, project = row
        if ann.user_id != auth.user_id and not auth.is_admin:
            raise service.Forbidden("this annotation belongs to another annotator")
        return annotation_json(ann, item, sample, username, project)


@router.get("/annotations/{annotation_id}")
def get_annotation(annotation_id: int, auth: ApiUser, db: DB) -> dict:
    return _read_annotation(db, auth, annotation_id)


@router.get("/annotations")
def list_annotations(auth: ApiUser, db: DB, project: str | None = None, limit: int = 1000) -> list[dict]:
    """The caller's own annotations (an admin sees everyone's), newest first."""
    q = _annotation_query().order_by(Annotation.id.desc()).limit(max(1, min(limit, 10_000)))
    if not auth.is_admin:
        q = q.where(Annotation.user_id == auth.user_id)
    if project:
        q = q.where(Project.name == project)
    with db.read() as s:
        return [annotation_json(*row) for row in s.execute(q).all()]


@router.get("/admin/projects/{name}/stats")
def stats(name: str, auth: ApiAdmin, db: DB) -> dict:
    with db.read() as s:
        return project_stats(s, service.get_project(s, name)).to_dict()


@router.get("/admin/projects/{name}/export")
def export(
    name: str, auth: ApiAdmin, db: DB, format: str = "ours", include_skipped: bool = False
) -> Response:  # noqa: A002
    return export_response(db, name, format, include_skipped)
