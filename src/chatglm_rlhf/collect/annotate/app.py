"""The FastAPI application: settings, middleware (limits, security headers), error pages, routers."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatglm_rlhf.collect.annotate import service
from chatglm_rlhf.collect.annotate.db import Database, migrate, require_current_schema
from chatglm_rlhf.collect.annotate.deps import LoginLimiter, LoginRequired
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


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(request: Request, status: int, detail: str) -> Response:
    if _is_api(request):
        return JSONResponse({"detail": detail}, status_code=status)
    # No user lookup here: handlers run on the event loop, and an error page must render even when
    # the database is the problem.
    html = render(
        "error.html",
        auth=None,
        notice=None,
        error=None,
        status=status,
        title=TITLES.get(status, "Error"),
        detail=detail,
    )
    return HTMLResponse(html, status_code=status)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        if request.method == "GET":
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        return error_response(request, 401, "log in first")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        response = error_response(request, exc.status_code, str(exc.detail))
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    @app.exception_handler(service.AnnotateError)
    async def _annotate(request: Request, exc: service.AnnotateError) -> Response:
        return error_response(request, exc.status, str(exc))

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(request, 422, f"{where}: {first.get('msg', 'invalid input')}")


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
