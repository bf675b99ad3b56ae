"""Security: roles on every endpoint, CSRF, escaping, cookies, hashing, size limits, token-only API."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from chatglm_rlhf.collect.annotate import deps, security
from chatglm_rlhf.collect.annotate.models import Annotation, WebSession

AUTH_DEPS = {deps.page_user, deps.page_admin, deps.form_user, deps.form_admin, deps.api_user, deps.api_admin}
ADMIN_DEPS = {deps.page_admin, deps.form_admin, deps.api_admin}
PUBLIC = {("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("GET", "/healthz")}


def _calls(dependant) -> set:
    out = {dependant.call}
    for d in dependant.dependencies:
        out |= _calls(d)
    return out


def _flatten(routes):
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # FastAPI >= 0.120 keeps included routers nested
            yield from _flatten(route.original_router.routes)


def _routes(app):
    for route in _flatten(app.routes):
        for method in route.methods:
            yield method, route


def _fill(path: str) -> str:
    return re.sub(
        r"\{[^}]+\}", lambda m: "demo" if "name" in m.group(0) or "username" in m.group(0) else "1", path
    )


def test_every_route_declares_a_role(env):
    app = env.app()
    checked = 0
    for method, route in _routes(app):
        calls = _calls(route.dependant)
        if (method, route.path) in PUBLIC:
            assert not calls & AUTH_DEPS
            continue
        assert calls & AUTH_DEPS, f"{method} {route.path} has no auth dependency"
        is_admin_route = route.path.startswith("/admin") or route.path.startswith("/api/v1/admin")
        assert bool(calls & ADMIN_DEPS) == is_admin_route, f"{method} {route.path}: wrong role"
        checked += 1
    assert checked >= 20


def test_annotator_gets_403_on_every_admin_endpoint(env, helpers):
    c = env.client("ann1")
    api = env.api("ann1")
    page = c.get("/annotate/demo/guidelines")
    csrf = helpers.form_fields(page.text)["csrf_token"]
    hits = 0
    for method, route in _routes(env.app()):
        path = _fill(route.path)
        if route.path.startswith("/api/v1/admin"):
            r = api.request(method, path)
        elif route.path.startswith("/admin"):
            r = c.request(method, path, data={"csrf_token": csrf} if method == "POST" else None)
        else:
            continue
        assert r.status_code == 403, f"{method} {path} -> {r.status_code}"
        hits += 1
    assert hits >= 12


def test_anonymous_is_sent_to_login_and_api_needs_a_token(env):
    anon = env.client()
    r = anon.get("/annotate/demo")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert anon.get("/admin").status_code == 303
    assert anon.post("/annotate/demo/items/1", data={"x": "1"}).status_code == 401
    assert anon.get("/api/v1/me").status_code == 401
    # A browser's session cookie is not accepted by the API (only bearer tokens are).
    browser = env.client("ann1")
    assert browser.get("/api/v1/me").status_code == 401
    bad = env.client()
    bad.headers["Authorization"] = "Bearer cra_not-a-real-token"
    assert bad.get("/api/v1/me").status_code == 401


def test_reading_or_writing_another_annotators_annotation_is_403(env, helpers):
    c1 = env.client("ann1")
    page = helpers.start(c1)
    c1.post(helpers.form_action(page), data=helpers.answer(page))
    api1, api2 = env.api("ann1"), env.api("ann2")
    ann_id = api1.get("/api/v1/annotations").json()[0]["id"]
    assert api2.get(f"/api/v1/annotations/{ann_id}").status_code == 403
    assert api2.get("/api/v1/annotations").json() == []  # the list shows only one's own
    assert env.api("boss").get(f"/api/v1/annotations/{ann_id}").status_code == 200
    # Writing to ann1's open item as ann2: through the API and through the form.
    page = c1.get("/annotate/demo").text
    open_item = int(helpers.form_action(page).rsplit("/", 1)[1])
    body = {"idempotency_key": "stolen-key-01", "overall": 1, "scores": {}}
    assert (
        api2.post(f"/api/v1/assignments/{open_item}/annotation", json={**body, "skip": True}).status_code
        == 403
    )
    c2 = env.client("ann2")
    page2 = helpers.start(c2)
    data = helpers.answer(page2)
    r = c2.post(f"/annotate/demo/items/{open_item}", data=data)
    assert r.status_code == 403
    assert env.count(Annotation) == 1


def test_post_without_csrf_token_is_refused(env, helpers):
    c = env.client("ann1")
    page = helpers.start(c)
    data = helpers.answer(page)
    for bad in (None, "", "wrong-token"):
        d = dict(data)
        if bad is None:
            del d["csrf_token"]
        else:
            d["csrf_token"] = bad
        r = c.post(helpers.form_action(page), data=d)
        assert r.status_code == 403 and "CSRF" in r.text
    assert env.count(Annotation) == 0
    admin = env.client("boss")
    assert admin.post("/admin/users", data={"username": "eve", "password": "p" * 12}).status_code == 403
    # Login itself is protected by a double-submit cookie.
    anon = env.client()
    r = anon.post("/login", data={"username": "ann1", "password": helpers.password, "csrf_token": "x"})
    assert r.status_code == 403


def test_xss_payload_is_rendered_escaped(env, helpers):
    c = env.client("ann1")
    page = helpers.start(c)  # the first pair comes from sample s0, which carries the payload
    assert "Prompt 0 &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "Response 0." in page and "<script>alert" not in page
    # The only script tag is our own static file.
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/annotate.js" defer>']
    data = helpers.answer(page, rationale="<img src=x onerror=alert(1)>")
    c.post(helpers.form_action(page), data=data)
    admin = env.client("boss")
    export = admin.get("/admin/projects/demo/export?format=ours").text
    assert "<img src=x onerror=alert(1)>" in export  # stored verbatim, escaped only when shown
    assert "<script>" not in admin.get("/admin/projects/demo").text


def test_session_cookie_flags_and_logout(env, helpers):
    c = env.client()
    page = c.get("/login")
    assert "httponly" in page.headers["set-cookie"].lower()
    token = helpers.form_fields(page.text)["csrf_token"]
    r = c.post("/login", data={"username": "ann1", "password": helpers.password, "csrf_token": token})
    cookie = r.headers["set-cookie"].lower()
    assert "annotate_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "content-security-policy" in r.headers and r.headers["x-frame-options"] == "DENY"
    assert env.count(WebSession) == 1
    page = c.get("/annotate/demo/guidelines").text
    r = c.post("/logout", data={"csrf_token": helpers.form_fields(page)["csrf_token"]})
    assert r.status_code == 303 and env.count(WebSession) == 0
    assert c.get("/annotate/demo").status_code == 303


def test_passwords_are_hashed_with_scrypt(env):
    from sqlalchemy import select

    from chatglm_rlhf.collect.annotate.models import User

    with env.db.read() as s:
        stored = s.scalars(select(User.password_hash).where(User.username == "ann1")).one()
    assert stored.startswith("scrypt$") and "correct-horse" not in stored
    assert security.verify_password("correct-horse-1", stored)
    assert not security.verify_password("correct-horse-2", stored)
    assert not security.verify_password("x", "not-a-hash")
    with pytest.raises(ValueError):
        security.hash_password("short")


def test_wrong_password_then_rate_limit(env, helpers):
    c = env.client()
    token = helpers.form_fields(c.get("/login").text)["csrf_token"]
    codes = [
        c.post(
            "/login", data={"username": "ann1", "password": "wrong-password", "csrf_token": token}
        ).status_code
        for _ in range(11)
    ]
    assert codes[:10] == [401] * 10 and codes[10] == 429


def test_open_redirect_after_login_is_refused(env, helpers):
    c = env.client()
    token = helpers.form_fields(c.get("/login?next=//evil.example/x").text)["csrf_token"]
    r = c.post(
        "/login",
        data={
            "username": "ann1",
            "password": helpers.password,
            "csrf_token": token,
            "next": "//evil.example/x",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_input_size_limits(env, helpers):
    c = env.client("ann1")
    page = helpers.start(c)
    data = helpers.answer(page, rationale="x" * 5001)
    r = c.post(helpers.form_action(page), data=data)
    assert r.status_code == 422 and "rationale is limited" in r.text
    huge = helpers.answer(page, rationale="x" * 300_000)
    assert c.post(helpers.form_action(page), data=huge).status_code == 413
    api = env.api("ann1")
    r = api.post("/api/v1/assignments/1/annotation", json={"idempotency_key": "k" * 65, "skip": True})
    assert r.status_code == 422
    assert env.count(Annotation) == 0


def test_guidelines_markdown_is_safe():
    from chatglm_rlhf.collect.annotate.render import markdown_to_html

    out = str(
        markdown_to_html(
            "# T\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) **b**\n\n|a|b|\n|-|-|\n|1|2|"
        )
    )
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert 'href="javascript' not in out and "<strong>b</strong>" in out and "<table>" in out


def test_deactivated_user_is_locked_out_and_their_open_item_released(env, helpers):
    from chatglm_rlhf.collect.annotate import service
    from chatglm_rlhf.collect.annotate.models import Assignment, Item

    c = env.client("ann1")
    page = helpers.start(c)
    aid = int(helpers.form_action(page).rsplit("/", 1)[1])
    with env.db.read() as s:
        item_id = s.get(Assignment, aid).item_id
    admin = env.client("boss")
    csrf = helpers.form_fields(admin.get("/admin/users").text)["csrf_token"]
    assert admin.post("/admin/users/ann1/active", data={"csrf_token": csrf, "active": "0"}).status_code == 303
    assert c.get("/annotate/demo").status_code == 303  # the session no longer works
    assert env.api("ann1").get("/api/v1/me").status_code == 401  # nor the token
    with env.db.read() as s:
        assert s.get(Assignment, aid) is None and s.get(Item, item_id).n_active == 0
        assert not service.get_user(s, "ann1").active


def _planted_login(c, origin: str | None, site: str | None, password: str):
    """Log in as ann1 (the attacker) with a planted login-CSRF cookie and its matching token."""
    c.cookies.set(deps.LOGIN_CSRF_COOKIE, "planted-token-123", path="/login")
    headers = {k: v for k, v in (("Origin", origin), ("Sec-Fetch-Site", site)) if v is not None}
    data = {"username": "ann1", "password": password, "csrf_token": "planted-token-123", "next": "/"}
    return c.post("/login", data=data, headers=headers)


def test_login_csrf_from_a_sibling_origin_is_refused(env, helpers):
    from fastapi.testclient import TestClient

    app = env.app()
    for origin, site in (
        ("http://127.0.0.1:8001", None),  # another port on the same host
        ("http://evil.127.0.0.1:8000", None),  # a sibling subdomain
        ("https://127.0.0.1:8000", None),  # another scheme
        ("null", None),  # a sandboxed page or a data: URL
        (None, "cross-site"),
        (None, "same-site"),  # sibling ports and subdomains are "same-site", not "same-origin"
    ):
        with TestClient(app, base_url="http://127.0.0.1:8000", follow_redirects=False) as c:
            r = _planted_login(c, origin, site, helpers.password)
            assert r.status_code == 403, (origin, site, r.status_code)
            assert "cross-origin request refused" in r.text
            assert deps.SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert env.count(WebSession) == 0
    # The same post from the server's own origin (a LAN address and port, as the Host header says),
    # with Sec-Fetch-Site from a current browser, or without either header, logs in.
    for base, origin, site in (
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000", "same-origin"),
        ("http://192.168.1.20:8000", "http://192.168.1.20:8000", None),
        ("http://annotate.lan", "http://annotate.lan:80", None),
        ("http://127.0.0.1:8000", None, None),
    ):
        with TestClient(app, base_url=base, follow_redirects=False) as c:
            r = _planted_login(c, origin, site, helpers.password)
            assert r.status_code == 303, (base, origin, r.text)
            assert deps.SESSION_COOKIE in r.headers["set-cookie"]
    assert env.count(WebSession) == 4


def test_cross_origin_form_and_api_posts_are_refused(env, helpers):
    c = env.client("ann1")
    page = helpers.start(c)
    evil = {"Origin": "http://testserver:8081"}
    r = c.post(helpers.form_action(page), data=helpers.answer(page), headers=evil)
    assert r.status_code == 403 and "cross-origin request refused" in r.text
    fields = helpers.form_fields(page)
    assert c.post("/logout", data={"csrf_token": fields["csrf_token"]}, headers=evil).status_code == 403
    api = env.api("ann1")
    item = api.get("/api/v1/projects/demo/next").json()
    body = {"idempotency_key": "k" * 12, "skip": True}
    url = f"/api/v1/assignments/{item['assignment_id']}/annotation"
    r = api.post(url, json=body, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    assert env.count(Annotation) == 0 and env.count(WebSession) == 1
    # Same origin: the form post and the API call go through.
    r = c.post(helpers.form_action(page), data=helpers.answer(page), headers={"Origin": "http://testserver"})
    assert r.status_code == 303
    url = f"/api/v1/assignments/{api.get('/api/v1/projects/demo/next').json()['assignment_id']}/annotation"
    assert api.post(url, json=body, headers={"Sec-Fetch-Site": "none"}).status_code == 201
    assert env.count(Annotation) == 2
