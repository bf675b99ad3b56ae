"""Fixtures for the annotation app tests: a migrated SQLite database with a loaded project and users,
logged-in ASGI test clients, and helpers to read forms out of the rendered pages."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PASSWORD = "correct-horse-1"


@contextmanager
def scratch_postgres(bench) -> Iterator[str]:
    """A fresh, empty database on the known PostgreSQL server (``bench``: benchmarks/annotate_load.py),
    dropped afterwards; skip, saying why, when there is no usable server."""
    url = bench.pg_url_from_env()
    if not url:
        pytest.skip(
            "no PostgreSQL server: set CHATGLM_RLHF_TEST_PG_URL or run scripts/ci_annotate_services.sh "
            f"(writes {bench.PG_URL_FILE})"
        )
    pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]' for PostgreSQL")
    try:
        ctx = bench.fresh_postgres(url)
        db_url = ctx.__enter__()
    except Exception as e:  # noqa: BLE001 - any connection problem means "no server": skip, say why
        pytest.skip(f"PostgreSQL at {url.split('@')[-1]} not usable: {e}")
    try:
        yield db_url
    finally:
        ctx.__exit__(None, None, None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "load: load test against a real annotate server process (20 annotators x 50 submissions)"
    )


def candidates(n: int = 4, k: int = 3, xss: bool = True) -> list[dict]:
    """``n`` samples with ``k`` distinct responses; sample 0 carries an XSS payload everywhere."""
    rows = []
    for i in range(n):
        payload = "<script>alert('x')</script>" if xss and i == 0 else ""
        rows.append(
            {
                "id": f"s{i}",
                "prompt": f"Prompt {i} {payload}".strip(),
                "history": [
                    {"role": "user", "content": f"earlier {i}"},
                    {"role": "assistant", "content": f"reply {i}"},
                ]
                if i % 2
                else [],
                "responses": [f"Response {i}.{j} {payload}".strip() for j in range(k)],
                "category": "open_qa",
                "meta": {"source": "test", "n": i},
            }
        )
    return rows


def write_candidates(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def fast_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap scrypt parameters for accounts made in tests (the hash records its own parameters)."""
    from chatglm_rlhf.collect.annotate import security

    monkeypatch.setattr(security, "SCRYPT_N", 2**10)
    monkeypatch.setattr(security, "SCRYPT_P", 1)


@dataclass
class Env:
    db: object
    tmp: Path
    tokens: dict[str, str] = field(default_factory=dict)
    _clients: list = field(default_factory=list)

    def app(self):
        from chatglm_rlhf.collect.annotate.app import create_app

        return create_app(self.db)

    def client(self, username: str | None = None):
        """A TestClient with its own cookie jar, logged in as ``username`` (None: anonymous)."""
        from fastapi.testclient import TestClient

        c = TestClient(self.app(), follow_redirects=False)
        self._clients.append(c)
        if username:
            login(c, username)
        return c

    def api(self, username: str):
        from fastapi.testclient import TestClient

        c = TestClient(self.app(), follow_redirects=False)
        c.headers["Authorization"] = f"Bearer {self.tokens[username]}"
        self._clients.append(c)
        return c

    def count(self, model, **where) -> int:
        from sqlalchemy import func, select

        with self.db.read() as s:
            q = select(func.count()).select_from(model)
            for k, v in where.items():
                q = q.where(getattr(model, k) == v)
            return s.scalar(q)


def form_fields(page: str) -> dict[str, str]:
    """Hidden inputs of a page (csrf_token, idempotency_key, next) by name."""
    pairs = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    return {k: html.unescape(v) for k, v in pairs}


def form_action(page: str, form_id: str = "annotate-form") -> str:
    m = re.search(rf'<form id="{form_id}" method="post" action="([^"]+)"', page)
    assert m, "form not found"
    return m.group(1)


def login(client, username: str, password: str = PASSWORD):
    page = client.get("/login")
    token = form_fields(page.text)["csrf_token"]
    r = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token, "next": "/"}
    )
    assert r.status_code == 303, r.text
    return r


def answer(page: str, overall: int = 2, score: int = 4, action: str = "submit", **extra) -> dict:
    """A complete form submission for the item shown on ``page``."""
    fields = form_fields(page)
    data = {
        "csrf_token": fields["csrf_token"],
        "idempotency_key": fields["idempotency_key"],
        "action": action,
    }
    if action == "submit":
        data["overall"] = str(overall)
        for side in ("left", "right"):
            for c in ("helpfulness", "harmlessness", "fluency"):
                data[f"score_{side}_{c}"] = str(score)
    data.update(extra)
    return data


@pytest.fixture
def env(tmp_path: Path, fast_hash) -> Env:
    """Project ``demo`` (4 samples x 3 responses = 12 pairs, overlap 2); admin ``boss``; annotators
    ``ann1``..``ann3``, each with an API token."""
    from chatglm_rlhf.collect.annotate import service
    from chatglm_rlhf.collect.annotate.db import Database, migrate

    db = Database(str(tmp_path / "annotate.db"))
    migrate(db)
    path = write_candidates(tmp_path / "candidates.jsonl", candidates())
    service.load_file(db, str(path), "demo", overlap=2, pair_mode="all")
    e = Env(db=db, tmp=tmp_path)
    with db.write() as s:
        for name, role in (
            ("boss", "admin"),
            ("ann1", "annotator"),
            ("ann2", "annotator"),
            ("ann3", "annotator"),
        ):
            user = service.create_user(s, name, PASSWORD, role)
            e.tokens[name] = service.issue_token(s, user)
    yield e
    for c in e._clients:
        c.close()
    db.dispose()


def start_annotating(client, project: str = "demo") -> str:
    """Confirm the guidelines and return the first item page's HTML."""
    page = client.get(f"/annotate/{project}/guidelines")
    client.post(f"/annotate/{project}/guidelines", data={"csrf_token": form_fields(page.text)["csrf_token"]})
    r = client.get(f"/annotate/{project}")
    assert r.status_code == 200, r.text
    return r.text


def check_pick_order(s, project, a1, a2, a3) -> None:
    """On the ``env`` project (overlap 2): the next item is the fullest open one, then the lowest id."""
    from sqlalchemy import select

    from chatglm_rlhf.collect.annotate import service
    from chatglm_rlhf.collect.annotate.models import Item

    first = service.next_assignment(s, a1, project).item_id
    service.submit(
        s, a1, service.pending_assignment(s, a1, project).id, service.Submission("k-000001", skip=True)
    )
    second = service.pending_assignment(s, a1, project).item_id  # the skip freed `first`
    # a2: `second` is the only item with a judge so far: fullest first, then the lowest id.
    assert service.next_assignment(s, a2, project).item_id == second
    # a3: `second` is full (overlap 2), so the lowest id of the empty ones, which is `first` again.
    assert service.next_assignment(s, a3, project).item_id == first
    ids = sorted(s.scalars(select(Item.id).where(Item.project_id == project.id)))
    assert first == ids[0] and second == ids[1]


@pytest.fixture
def helpers():
    """The page helpers above, for test modules (they cannot import conftest by name)."""
    return type(
        "Helpers",
        (),
        {
            "form_fields": staticmethod(form_fields),
            "form_action": staticmethod(form_action),
            "answer": staticmethod(answer),
            "login": staticmethod(login),
            "start": staticmethod(start_annotating),
            "candidates": staticmethod(candidates),
            "write_candidates": staticmethod(write_candidates),
            "scratch_postgres": staticmethod(scratch_postgres),
            "check_pick_order": staticmethod(check_pick_order),
            "password": PASSWORD,
        },
    )
