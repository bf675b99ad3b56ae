"""Admin pages: projects and progress, loading candidates, overlap, guidelines, users, exports."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import select
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from chatglm_rlhf.collect.annotate import export, service
from chatglm_rlhf.collect.annotate.deps import DB, FormAdmin, PageAdmin
from chatglm_rlhf.collect.annotate.models import User
from chatglm_rlhf.collect.annotate.stats import project_stats
from chatglm_rlhf.collect.annotate.web import NOTICES, page, project_view, see_other

router = APIRouter(prefix="/admin")


@router.get("")
def admin_index(auth: PageAdmin, db: DB) -> HTMLResponse:
    with db.read() as s:
        projects = service.list_projects(s)
        stats = [project_stats(s, p) for p in projects]
    return page("admin_index.html", auth=auth, projects=projects, stats=stats)


@router.get("/projects/{name}")
def admin_project(name: str, auth: PageAdmin, db: DB, notice: str | None = None) -> HTMLResponse:
    with db.read() as s:
        project = service.get_project(s, name)
        st = project_stats(s, project)
        view = project_view(project)
    return page(
        "admin_project.html",
        auth=auth,
        project=view,
        st=st,
        max_guidelines=service.MAX_GUIDELINES_CHARS,
        notice=NOTICES.get(notice or ""),
    )


@router.post("/projects/{name}/overlap")
def set_overlap(name: str, auth_form: FormAdmin, db: DB) -> Response:
    _auth, form = auth_form
    value = str(form.get("overlap") or "")
    if not value.isdigit():
        raise service.Invalid("overlap must be a whole number")
    with db.write() as s:
        service.set_overlap(s, service.get_project(s, name), int(value))
    return see_other(f"/admin/projects/{name}?notice=saved")


@router.post("/projects/{name}/guidelines")
def set_guidelines(name: str, auth_form: FormAdmin, db: DB) -> Response:
    _auth, form = auth_form
    text = str(form.get("guidelines") or "").replace("\r\n", "\n")
    with db.write() as s:
        service.set_guidelines(s, service.get_project(s, name), text)
    return see_other(f"/admin/projects/{name}?notice=saved")


def export_response(db, name: str, fmt: str, include_skipped: bool = False, filename: str = "") -> Response:
    """The export file as a response, written by the same code as the CLI to a temporary file that is
    sent in chunks and deleted afterwards: the server never holds a whole export in memory."""
    if fmt not in export.FORMATS:
        raise service.Invalid(f"format must be one of {export.FORMATS}")
    tmp = tempfile.mkdtemp(prefix="annotate-export-")
    try:
        path = Path(tmp) / "export.jsonl"
        with db.read() as s:
            records = export.iter_comparisons(s, service.get_project(s, name), include_skipped)
            written, left_out = export.write(path, records, fmt)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    headers = {"x-records-written": str(written), "x-records-left-out": str(left_out)}
    if filename:
        headers["content-disposition"] = f'attachment; filename="{filename}"'
    cleanup = BackgroundTask(shutil.rmtree, tmp, ignore_errors=True)
    return FileResponse(path, media_type="application/x-ndjson", headers=headers, background=cleanup)


@router.get("/projects/{name}/export")
def export_file(name: str, auth: PageAdmin, db: DB, format: str = "ours") -> Response:  # noqa: A002
    return export_response(db, name, format, filename=f"{name}-{format}.jsonl")


@router.post("/load")
async def load(request: Request, auth_form: FormAdmin, db: DB) -> HTMLResponse:
    auth, form = auth_form
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise service.Invalid("choose a candidates file to upload")
    overlap = str(form.get("overlap") or "3")
    if not overlap.isdigit():
        raise service.Invalid("overlap must be a whole number")
    name = str(form.get("project") or "")
    fd, tmp = tempfile.mkstemp(suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as f:
            while chunk := await upload.read(1 << 20):
                f.write(chunk)
        pairs, max_chars = str(form.get("pairs") or "all"), request.app.state.settings.max_chars
        # Parsing and inserting are blocking work: keep them off the event loop.
        # Messages name the uploaded file, not the server's temporary copy.
        source = Path((upload.filename or "upload.jsonl").replace("\\", "/")).name or "upload.jsonl"
        lines, report = await run_in_threadpool(
            service.load_file, db, tmp, name, int(overlap), pairs, max_chars, source
        )
    finally:
        os.unlink(tmp)
    lines = [*lines, *report.lines()]
    return page("admin_loaded.html", auth=auth, project={"name": name}, lines=lines)


@router.get("/users")
def users(auth: PageAdmin, db: DB) -> HTMLResponse:
    return _users_page(auth, db)


def _users_page(auth, db, token: str | None = None, token_user: str | None = None) -> HTMLResponse:
    with db.read() as s:
        rows = list(s.scalars(select(User).order_by(User.username)))
    return page("admin_users.html", auth=auth, users=rows, token=token, token_user=token_user)


@router.post("/users")
def add_user(auth_form: FormAdmin, db: DB) -> Response:
    _auth, form = auth_form
    with db.write() as s:
        service.create_user(
            s,
            str(form.get("username") or ""),
            str(form.get("password") or ""),
            str(form.get("role") or "annotator"),
        )
    return see_other("/admin/users")


@router.post("/users/{username}/token")
def new_token(username: str, auth_form: FormAdmin, db: DB) -> HTMLResponse:
    auth, _form = auth_form
    with db.write() as s:
        token = service.issue_token(s, service.get_user(s, username))
    return _users_page(auth, db, token=token, token_user=username)


@router.post("/users/{username}/active")
def set_active(username: str, auth_form: FormAdmin, db: DB) -> Response:
    auth, form = auth_form
    with db.write() as s:
        user = service.get_user(s, username)
        if user.id == auth.user_id:
            raise service.Invalid("you cannot deactivate yourself")
        service.set_active(s, user, form.get("active") == "1")
    return see_other("/admin/users")
