"""The FastAPI application: settings, middleware (limits, security headers), error pages, routers."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatglm_rlhf.collect.annotate import service
from chatglm_rlhf.collect.annotate.db import Database, migrate, require_current_schema
from chatglm_rlhf.collect.annotate.deps import LoginLimiter, LoginRequired, _cookie_auth
from chatglm_rlhf.collect.annotate.render import STATIC_DIR, render

TITLES = {400: "Bad request", 401: "Not logged in", 403: "Forbidden", 404: "Not found", 409: "Conflict",
          411: "Length required", 413: "Too large", 422: "Invalid input", 429: "Too many attempts"}  # fmt: skip

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@dataclass
class Settings:
    secure_cookies: bool = False  # set the cookie's Secure flag (serve behind HTTPS)
    session_hours: float = 12.0
    max_body_bytes: int = 256 * 1024  # every form and JSON body
    max_upload_bytes: int = 64 * 1024 * 1024  # candidates files on /admin/load
    max_chars: int = 50_000  # longest prompt/response/turn accepted when loading


class LimitsAndHeaders:
    """Refuse oversized bodies before they are read, and add security headers to every response.

    Bodies must declare Content-Length (h11 then enforces it), so the size check is one comparison.
    """

    def __init__(self, app: ASGIApp, settings: Settings, upload_paths: tuple[str, ...]) -> None:
        self.app, self.settings, self.upload_paths = app, settings, upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                existing = {k.lower() for k, _ in message["headers"]}
                if scope["path"].startswith("/static/"):
                    existing.add(b"cache-control")  # static files may be cached; pages may not
                message["headers"] += [(k, v) for k, v in SECURITY_HEADERS if k not in existing]
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return None
        why = cross_origin(scope)
        if why is not None:
            return plain_error(scope["path"], 403, why)
        headers = dict(scope["headers"])
        limit = (
            self.settings.max_upload_bytes
            if scope["path"] in self.upload_paths
            else self.settings.max_body_bytes
        )
        length = headers.get(b"content-length")
        if length is None:
            if b"transfer-encoding" in headers:
                return JSONResponse({"detail": "send Content-Length"}, status_code=411)
            return None
        if not length.isdigit() or int(length) > limit:
            return JSONResponse({"detail": f"request body above the limit of {limit} bytes"}, status_code=413)
        return None


DEFAULT_PORTS = {"http": 80, "https": 443}
# Sec-Fetch-Site values a browser sends for a request this server's own pages (or the user) made.
SAME_ORIGIN_FETCH = {b"same-origin", b"none"}


def _origin_key(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of ``scheme://netloc``, the port filled in; None if it does not parse."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return scheme, parts.hostname.lower(), port


def cross_origin(scope: Scope) -> str | None:
    """Why a state-changing request is refused as cross-origin, or None to let it through.

    Cookies do not isolate ports or sibling subdomains, so a page there could plant the login CSRF
    cookie (and any token) and post a form here. The browser's ``Origin`` and ``Sec-Fetch-Site``
    headers cannot be forged by such a page: the request must come from this server's own origin,
    compared with the Host header it was sent to (so http://<LAN address>:port works as is).
    Requests without either header (scripts, curl, old browsers) are let through.
    """
    headers = dict(scope["headers"])
    site = headers.get(b"sec-fetch-site")
    if site is not None and site.lower() not in SAME_ORIGIN_FETCH:
        return f"cross-origin request refused (Sec-Fetch-Site: {site.decode('latin-1')})"
    origin = headers.get(b"origin")
    if origin is None:
        return None
    origin_text = origin.decode("latin-1")
    scheme, _, netloc = origin_text.partition("://")
    host = headers.get(b"host", b"").decode("latin-1")
    own = _origin_key(scope.get("scheme", "http"), host)
    if own is None or _origin_key(scheme.lower(), netloc) != own:
        return f"cross-origin request refused: Origin {origin_text} is not this server ({host or 'no Host'})"
    return None


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def plain_error(path: str, status: int, detail: str, auth=None) -> Response:
    """JSON for the API, else the error page (with the user bar when ``auth`` is known)."""
    if path.startswith("/api/"):
        return JSONResponse({"detail": detail}, status_code=status)
    html = render(
        "error.html",
        auth=auth,
        notice=None,
        error=None,
        status=status,
        title=TITLES.get(status, "Error"),
        detail=detail,
    )
    return HTMLResponse(html, status_code=status)


async def error_response(request: Request, status: int, detail: str) -> Response:
    auth = None
    if not _is_api(request):
        # The user bar (and Log out) on error pages too. The lookup runs in the thread pool, and an
        # error page must render even when the database is the problem: then it has no user bar.
        try:
            auth = await run_in_threadpool(_cookie_auth, request)
        except Exception:  # noqa: BLE001 - any failure only costs the user bar
            auth = None
    return plain_error(request.url.path, status, detail, auth)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        if request.method == "GET":
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        return await error_response(request, 401, "log in first")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        response = await error_response(request, exc.status_code, str(exc.detail))
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    @app.exception_handler(service.AnnotateError)
    async def _annotate(request: Request, exc: service.AnnotateError) -> Response:
        return await error_response(request, exc.status, str(exc))

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return await error_response(request, 422, f"{where}: {first.get('msg', 'invalid input')}")


def create_app(db: Database | str, settings: Settings | None = None, run_migrations: bool = False) -> FastAPI:
    """The app over ``db``. With ``run_migrations`` the schema is upgraded first; otherwise it must be current."""
    from chatglm_rlhf.collect.annotate import admin_web, api, web

    database = db if isinstance(db, Database) else Database(db)
    if run_migrations:
        migrate(database)
    require_current_schema(database)
    app = FastAPI(title="chatglm-rlhf annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = database
    app.state.settings = settings or Settings()
    app.state.login_limiter = LoginLimiter()
    app.add_middleware(LimitsAndHeaders, settings=app.state.settings, upload_paths=("/admin/load",))
    _install_handlers(app)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(web.router)
    app.include_router(admin_web.router)
    app.include_router(api.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    return app
