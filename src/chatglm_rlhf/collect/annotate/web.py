"""Pages for everyone: log in/out, the project list, guidelines, and the annotator's item page."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import FormData

from chatglm_rlhf.collect.annotate import security, service
from chatglm_rlhf.collect.annotate.db import Database
from chatglm_rlhf.collect.annotate.deps import (
    DB,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Auth,
    FormUser,
    PageUser,
    _cookie_auth,
    read_form,
)
from chatglm_rlhf.collect.annotate.models import Assignment, User
from chatglm_rlhf.collect.annotate.render import render
from chatglm_rlhf.data.schema import CRITERIA

router = APIRouter()

CHOICES = [
    (1, "A much better"),
    (2, "A slightly better"),
    (3, "Tie"),
    (4, "B slightly better"),
    (5, "B much better"),
]
NOTICES = {
    "already": "That item had already been submitted; here is your next one.",
    "saved": "Saved.",
    "submitted": "Saved: your answer to the previous item is stored.",
    "skipped": "Skipped: the previous item goes to another annotator.",
}
# The notice for the page after a submission travels in a one-use cookie, so that the next item's URL
# stays /annotate/<project> and a reload does not say "saved" again.
FLASH_COOKIE = "annotate_flash"
HISTORY_SHOWN = 2  # earlier turns than these are folded, so that both responses stay in view


def page(name: str, status: int = 200, **ctx) -> HTMLResponse:
    ctx.setdefault("notice", None)
    ctx.setdefault("error", None)
    return HTMLResponse(render(name, **ctx), status_code=status)


def project_view(project) -> dict:
    """The project's fields for templates, read while the session is open (guidelines load lazily)."""
    keys = ("name", "overlap", "pair_mode", "guidelines_md", "guidelines_version")
    return {k: getattr(project, k) for k in keys}


def safe_next(target: str | None) -> str:
    """Only local paths: an open redirect to another site would help phishing."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# --- login ----------------------------------------------------------------------------------------


@router.get("/")
def home(request: Request) -> Response:
    auth = _cookie_auth(request)
    if auth is None:
        return see_other("/login")
    return see_other("/admin" if auth.is_admin else "/annotate")


def _login_page(request: Request, next_url: str, error: str | None = None, status: int = 200) -> Response:
    # Before login there is no session to hold a CSRF token, so the login form uses a double-submit
    # cookie: a cross-site page can post the form but cannot read or set this cookie.
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or security.new_token()
    response = page("login.html", status, auth=None, login_csrf=token, next=safe_next(next_url), error=error)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.app.state.settings.secure_cookies,
    )
    return response


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:  # noqa: A002 - the query name
    return _login_page(request, next)


@router.post("/login")
def login(request: Request, form: Annotated[FormData, Depends(read_form)]) -> Response:
    if not security.same(str(form.get("csrf_token") or ""), request.cookies.get(LOGIN_CSRF_COOKIE)):
        raise HTTPException(403, "missing or invalid CSRF token: reload the login page")
    username = str(form.get("username") or "")[:64]
    password = str(form.get("password") or "")
    next_url = str(form.get("next") or "/")
    client = request.client.host if request.client else "?"
    limiter = request.app.state.login_limiter
    if limiter.blocked(client, username):
        return _login_page(request, next_url, "Too many failed attempts: wait 15 minutes.", 429)
    db: Database = request.app.state.db
    with db.write() as s:
        user = service.authenticate(s, username, password)
        token = None if user is None else service.create_session(s, user, _ttl(request))
    if token is None:
        limiter.failed(client, username)
        return _login_page(request, next_url, "Wrong username or password.", 401)
    limiter.succeeded(client, username)
    response = see_other(safe_next(next_url))
    settings = request.app.state.settings
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_hours * 3600),
        path="/",
        httponly=True,  # scripts (including injected ones) cannot read the session
        samesite="lax",  # not sent on cross-site POSTs; the CSRF token covers the rest
        secure=settings.secure_cookies,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _ttl(request: Request) -> timedelta:
    return timedelta(hours=request.app.state.settings.session_hours)


@router.post("/logout")
def logout(request: Request, auth_form: FormUser, db: DB) -> Response:
    with db.write() as s:
        service.end_session(s, request.cookies.get(SESSION_COOKIE))
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- annotator pages ------------------------------------------------------------------------------


@router.get("/annotate")
def projects(auth: PageUser, db: DB) -> Response:
    with db.read() as s:
        names = [p.name for p in service.list_projects(s)]
    if len(names) == 1:
        return see_other(f"/annotate/{names[0]}")
    return page("projects.html", auth=auth, projects=[{"name": n} for n in names])


@router.get("/annotate/{project_name}/guidelines")
def guidelines(project_name: str, auth: PageUser, db: DB) -> Response:
    with db.read() as s:
        project = service.get_project(s, project_name)
        user = s.get(User, auth.user_id)
        first = not service.has_seen_guidelines(s, user, project)
        view = project_view(project)
        sections = service.guideline_sections(view["guidelines_md"])
        changes = service.guidelines_changes(s, user, project, sections)
    for n, sec in enumerate(sections):
        sec["id"], sec["changed"] = f"section-{n + 1}", sec["key"] in changes.changed
    return page("guidelines.html", auth=auth, project=view, first=first, sections=sections, changes=changes)


@router.post("/annotate/{project_name}/guidelines")
def guidelines_read(project_name: str, auth_form: FormUser, db: DB) -> Response:
    auth, _form = auth_form
    with db.write() as s:
        project = service.get_project(s, project_name)
        service.mark_guidelines_seen(s, s.get(User, auth.user_id), project)
    return see_other(f"/annotate/{project_name}")


def _item_context(s, auth: Auth, project, assignment: Assignment) -> dict:
    sample = assignment.item.sample
    shown = [assignment.item.idx_a, assignment.item.idx_b]
    if assignment.swapped:
        shown.reverse()
    return {
        "auth": auth,
        "project": {"name": project.name},
        "assignment": {"id": assignment.id},
        "sample": {
            "round": sample.round,  # a later feedback round's batch: the annotator sees which
            "prompt": sample.prompt,
            "older": list(sample.history)[:-HISTORY_SHOWN],
            "recent": list(sample.history)[-HISTORY_SHOWN:],
        },
        "sides": [
            {"key": "left", "title": "A", "text": sample.responses[shown[0]]},
            {"key": "right", "title": "B", "text": sample.responses[shown[1]]},
        ],
        "criteria": CRITERIA,
        "choices": CHOICES,
        "counts": service.user_counts(s, auth.user_id, project),
        "idem": secrets.token_urlsafe(18),
        "max_rationale": service.MAX_RATIONALE_CHARS,
        "values": {},
        "flags": [],
    }


@router.get("/annotate/{project_name}")
def annotate(
    request: Request, project_name: str, auth: PageUser, db: DB, notice: str | None = None
) -> Response:
    flash = request.cookies.get(FLASH_COOKIE)
    response = _annotate(project_name, auth, db, notice or flash)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/annotate")
    return response


def _annotate(project_name: str, auth: Auth, db: Database, notice: str | None) -> Response:
    # Usually the item was assigned when the previous one was submitted: a read is enough, and reads
    # do not wait for writers. Only when nothing is open does a write transaction assign one.
    with db.lookup() as s:
        project = service.get_project(s, project_name)
        user = auth.user_id  # the session lookup read the user: no need to load the row again
        if not service.has_seen_guidelines(s, user, project):
            return see_other(f"/annotate/{project_name}/guidelines")
        assignment = service.pending_assignment(s, user, project, with_item=True)
        ctx = None if assignment is None else _item_context(s, auth, project, assignment)
    if ctx is None:
        with db.write() as s:
            project, user = service.get_project(s, project_name), auth.user_id
            assignment = service.next_assignment(s, user, project)
            if assignment is None:
                counts = service.user_counts(s, user, project)
                return page(
                    "done.html", auth=auth, project=project, counts=counts, notice=NOTICES.get(notice or "")
                )
            ctx = _item_context(s, auth, project, assignment)
    return page("item.html", notice=NOTICES.get(notice or ""), **ctx)


def _int(form: FormData, name: str) -> int | None:
    value = form.get(name)
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) <= 2 else None


def parse_submission(form: FormData) -> service.Submission:
    """Form fields (named by display side) -> a Submission; validation happens in the service."""
    return service.Submission(
        idempotency_key=str(form.get("idempotency_key") or ""),
        skip=form.get("action") == "skip",
        overall=_int(form, "overall"),
        scores_left={c: v for c in CRITERIA if (v := _int(form, f"score_left_{c}")) is not None},
        scores_right={c: v for c in CRITERIA if (v := _int(form, f"score_right_{c}")) is not None},
        rationale=str(form.get("rationale") or "").replace("\r\n", "\n").strip(),
        flags=[str(f) for f in form.getlist("flags")][:10],
    )


def submit_once(db: Database, user_id: int, assignment_id: int, sub: service.Submission) -> tuple[int, bool]:
    """One transaction; if a concurrent duplicate won the race, answer with the stored row instead.

    The user is passed by id: the request's session lookup has just read the user (active, or it
    would not have got here), and loading the row again would cost one more round trip."""
    try:
        with db.write() as s:
            ann, created = service.submit(s, user_id, assignment_id, sub)
            return ann.id, created
    except IntegrityError:
        with db.read() as s:
            ann = service.find_by_key(s, user_id, sub.idempotency_key)
            if ann is not None and ann.assignment_id == assignment_id:
                return ann.id, False
        raise service.Conflict("this item was already submitted") from None


@router.post("/annotate/{project_name}/items/{assignment_id}")
def submit_item(
    request: Request, project_name: str, assignment_id: int, auth_form: FormUser, db: DB
) -> Response:
    auth, form = auth_form
    sub = parse_submission(form)
    try:
        submit_once(db, auth.user_id, assignment_id, sub)
    except service.Invalid as e:
        return _redisplay(db, auth, project_name, assignment_id, form, str(e))
    except service.Conflict:
        return see_other(f"/annotate/{project_name}?notice=already")
    response = see_other(f"/annotate/{project_name}")
    response.set_cookie(
        FLASH_COOKIE,
        "skipped" if sub.skip else "submitted",
        max_age=120,
        path="/annotate",
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.secure_cookies,
    )
    return response


def _redisplay(
    db: Database, auth: Auth, project_name: str, assignment_id: int, form: FormData, error: str
) -> Response:
    """The same item again with the annotator's choices kept and the problem stated.

    The form gets a fresh idempotency key: nothing was stored under the old one, which may itself
    have been the problem."""
    with db.read() as s:
        project = service.get_project(s, project_name)
        assignment = service.get_assignment(s, s.get(User, auth.user_id), assignment_id)
        ctx = _item_context(s, auth, project, assignment)
    ctx["values"] = {k: str(v) for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    ctx["flags"] = [str(f) for f in form.getlist("flags")]
    return page("item.html", 422, error=error, **ctx)
