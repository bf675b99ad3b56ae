"""Who is asking, and may they: session cookies and CSRF for pages, bearer tokens for the JSON API.

Every route depends on exactly one of ``page_user``, ``page_admin``, ``form_user``, ``form_admin``,
``api_user`` or ``api_admin`` ("/", which only redirects, /login, static files and /healthz are the
only public routes; a test walks the route table to check). Pages use the session cookie and require the session's CSRF token on
every POST; the API accepts only ``Authorization: Bearer`` tokens, never the cookie, so a foreign page
cannot make a browser call it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.datastructures import FormData

from chatglm_rlhf.collect.annotate import security, service
from chatglm_rlhf.collect.annotate.db import Database

SESSION_COOKIE = "annotate_session"
LOGIN_CSRF_COOKIE = "annotate_login_csrf"
MAX_FORM_FIELDS = 100


@dataclass(frozen=True)
class Auth:
    """The signed-in user, copied out of the ORM so it can cross threads and sessions."""

    user_id: int
    username: str
    role: str
    csrf: str = ""  # the session's CSRF token (pages only)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class LoginRequired(Exception):
    """Raised by page dependencies; the app answers with a redirect to /login (or 401 for POSTs)."""


# Dependencies that do no blocking work are ``async def``: FastAPI then runs them on the event loop
# instead of handing each one to the thread pool (a measurable cost per request under load).


async def get_db(request: Request) -> Database:
    return request.app.state.db


def _db(request: Request) -> Database:
    return request.app.state.db


def _cookie_auth(request: Request) -> Auth | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with _db(request).lookup() as s:
        ws = service.session_for(s, token)
        if ws is None:
            return None
        return Auth(ws.user.id, ws.user.username, ws.user.role, ws.csrf_token)


def page_user(request: Request) -> Auth:
    auth = _cookie_auth(request)
    if auth is None:
        raise LoginRequired()
    return auth


async def page_admin(auth: Annotated[Auth, Depends(page_user)]) -> Auth:
    if not auth.is_admin:
        raise HTTPException(403, "this page is for admins")
    return auth


async def read_form(request: Request) -> FormData:
    settings = request.app.state.settings
    return await request.form(max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=settings.max_body_bytes)


def _check_csrf(auth: Auth, form: FormData) -> None:
    if not security.same(str(form.get("csrf_token") or ""), auth.csrf):
        raise HTTPException(403, "missing or invalid CSRF token: reload the page and try again")


async def form_user(
    auth: Annotated[Auth, Depends(page_user)], form: Annotated[FormData, Depends(read_form)]
) -> tuple[Auth, FormData]:
    _check_csrf(auth, form)
    return auth, form


async def form_admin(
    auth: Annotated[Auth, Depends(page_admin)], form: Annotated[FormData, Depends(read_form)]
) -> tuple[Auth, FormData]:
    _check_csrf(auth, form)
    return auth, form


def api_user(request: Request) -> Auth:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401, "send an API token: Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"}
        )
    with _db(request).lookup() as s:
        user = service.user_by_token(s, token.strip())
        if user is None:
            raise HTTPException(401, "invalid API token", {"WWW-Authenticate": "Bearer"})
        return Auth(user.id, user.username, user.role)


async def api_admin(auth: Annotated[Auth, Depends(api_user)]) -> Auth:
    if not auth.is_admin:
        raise HTTPException(403, "this endpoint is for admins")
    return auth


PageUser = Annotated[Auth, Depends(page_user)]
PageAdmin = Annotated[Auth, Depends(page_admin)]
FormUser = Annotated[tuple[Auth, FormData], Depends(form_user)]
FormAdmin = Annotated[tuple[Auth, FormData], Depends(form_admin)]
ApiUser = Annotated[Auth, Depends(api_user)]
ApiAdmin = Annotated[Auth, Depends(api_admin)]
DB = Annotated[Database, Depends(get_db)]


class LoginLimiter:
    """At most ``limit`` failed logins per (client, username) in ``window`` seconds, then 429."""

    def __init__(self, limit: int = 10, window: float = 900.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        q = self._failures[key]
        while q and q[0] < time.monotonic() - self.window:
            q.popleft()
        return q

    def blocked(self, client: str, username: str) -> bool:
        with self._lock:
            return len(self._recent((client, username))) >= self.limit

    def failed(self, client: str, username: str) -> None:
        with self._lock:
            self._recent((client, username)).append(time.monotonic())
            if len(self._failures) > 10_000:  # bound memory under a username-spraying attack
                self._failures.clear()

    def succeeded(self, client: str, username: str) -> None:
        with self._lock:
            self._failures.pop((client, username), None)
