"""Load test of the annotation app: N concurrent simulated annotators x M submissions each.

Each simulated annotator logs in through the real login form, confirms the guidelines, then loops:
GET the next item page, POST the filled form (every ``--dup-every``-th form is posted twice at the
same moment, as a double click would). The server is a real ``annotate serve`` process on 127.0.0.1. Afterwards the
server is killed with SIGKILL, the database is checked (rows, lost, duplicated), the server is
restarted and its stats endpoint must report the same count.

    python benchmarks/annotate_load.py                      # SQLite file in a temp dir
    python benchmarks/annotate_load.py --pg-url postgresql+psycopg://user:pw@127.0.0.1/postgres

Prints a table and writes ``benchmarks/results/annotate_load.json``. ``--pg-url`` (or
$CHATGLM_RLHF_TEST_PG_URL, or the URL file written by scripts/ci_annotate_services.sh) names a
server where a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

PG_URL_FILE = "/tmp/chatglm_rlhf_annotate_pg.url"
RESULTS = Path(__file__).parent / "results" / "annotate_load.json"
PASSWORD = "bench-password-1"
PROJECT = "bench"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
ACTION = re.compile(r'<form id="annotate-form" method="post" action="([^"]+)"')


def pg_url_from_env() -> str | None:
    """A PostgreSQL server URL from $CHATGLM_RLHF_TEST_PG_URL or the CI script's URL file."""
    url = os.environ.get("CHATGLM_RLHF_TEST_PG_URL")
    if not url and os.path.exists(PG_URL_FILE):
        url = Path(PG_URL_FILE).read_text().strip()
    return url or None


@contextmanager
def fresh_postgres(base_url: str):
    """A new, empty database on the server of ``base_url``, dropped afterwards; yields its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(base_url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"annotate_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def candidates(n_samples: int, k: int = 3) -> list[dict]:
    return [
        {
            "id": f"b{i}",
            "prompt": f"Benchmark prompt {i}: explain item {i} briefly.",
            "history": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
            if i % 3
            else [],
            "responses": [f"Answer {j} to prompt {i}. " * 20 for j in range(k)],
            "category": "bench",
        }
        for i in range(n_samples)
    ]


def setup(db_url: str, annotators: int, per_annotator: int, overlap: int, workdir: Path) -> str:
    """Migrate, load enough pairs (with 20% spare slots), create users; returns the admin's API token."""
    from chatglm_rlhf.collect.annotate import security, service
    from chatglm_rlhf.collect.annotate.db import Database, migrate

    # Logins are not what is measured: cheap hashes keep set-up short (the hash stores its params).
    security.SCRYPT_N, security.SCRYPT_P = 2**10, 1
    db = Database(db_url)
    migrate(db)
    pairs_needed = annotators * per_annotator * 1.2 / overlap
    path = workdir / "candidates.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in candidates(int(pairs_needed / 3) + 1)))
    service.load_file(db, str(path), PROJECT, overlap=overlap, pair_mode="all")
    with db.write() as s:
        for u in range(annotators):
            s.add(service.create_user(s, f"ann{u:02d}", PASSWORD, "annotator"))
        token = service.issue_token(s, service.create_user(s, "admin", PASSWORD, "admin"))
    db.dispose()
    return token


def _hidden(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in HIDDEN.findall(page)}


async def _login(client, username: str) -> None:
    page = await client.get("/login")
    r = await client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": _hidden(page.text)["csrf_token"]},
    )
    assert r.status_code == 303, f"login {username}: {r.status_code}"
    page = await client.get(f"/annotate/{PROJECT}/guidelines")
    await client.post(
        f"/annotate/{PROJECT}/guidelines", data={"csrf_token": _hidden(page.text)["csrf_token"]}
    )


def _form(page: str, i: int) -> tuple[str, dict]:
    fields = _hidden(page)
    data = {
        "csrf_token": fields["csrf_token"],
        "idempotency_key": fields["idempotency_key"],
        "action": "submit",
    }
    data["overall"] = str(1 + i % 5)
    for side in ("left", "right"):
        for c in ("helpfulness", "harmlessness", "fluency"):
            data[f"score_{side}_{c}"] = str(1 + (i + len(side)) % 5)
    return ACTION.search(page).group(1), data


async def _send(client, method: str, url: str, stats: dict, **kw):
    """One request, sent again (at most twice) if the connection broke before a response came.

    Safe for the form posts too: each carries its idempotency key, so a repeat of a post that was
    committed makes no second row. A retry is counted; a third failure is raised.
    """
    import httpx

    for attempt in range(3):
        try:
            return await client.request(method, url, **kw)
        except httpx.TransportError:
            if attempt == 2:
                raise
            stats["retries"] = stats.get("retries", 0) + 1
            await asyncio.sleep(0.05)


async def annotator(base: str, username: str, n: int, dup_every: int, stats: dict) -> None:
    import httpx

    async with httpx.AsyncClient(
        base_url=base, trust_env=False, follow_redirects=False, timeout=120
    ) as client:
        await _login(client, username)
        for i in range(n):
            t0 = time.perf_counter()
            page = await _send(client, "GET", f"/annotate/{PROJECT}", stats)
            t1 = time.perf_counter()
            if 'id="annotate-form"' not in page.text:
                stats["errors"].append(f"{username}: no item at submission {i} ({page.status_code})")
                return
            action, data = _form(page.text, i)
            double = bool(dup_every) and i % dup_every == 0
            if double:  # a double-submitted form, both copies in flight at once: one row, two 303s
                r, again = await asyncio.gather(
                    _send(client, "POST", action, stats, data=data),
                    _send(client, "POST", action, stats, data=data),
                )
                stats["duplicate_posts"] += 1
                if again.status_code != 303 or again.headers.get("location") != f"/annotate/{PROJECT}":
                    stats["errors"].append(f"{username}: duplicate post {i} -> {again.status_code}")
            else:
                r = await _send(client, "POST", action, stats, data=data)
            t2 = time.perf_counter()
            if r.status_code != 303 or r.headers.get("location") != f"/annotate/{PROJECT}":
                stats["errors"].append(
                    f"{username}: submit {i} -> {r.status_code} {r.headers.get('location')}"
                )
                continue
            stats["next_ms"].append((t1 - t0) * 1000)
            stats["submit_ms"].append((t2 - t1) * 1000)
            stats["acknowledged"].add((username, int(action.rsplit("/", 1)[1])))


def check_db(db_url: str, acknowledged: set[tuple[str, int]]) -> dict:
    """Rows, lost (acknowledged but absent) and duplicated (a pair twice for a user, or extra rows)."""
    from sqlalchemy import func, select

    from chatglm_rlhf.collect.annotate.db import Database
    from chatglm_rlhf.collect.annotate.models import Annotation, User

    db = Database(db_url)
    with db.read() as s:
        rows = s.execute(
            select(User.username, Annotation.assignment_id, Annotation.item_id)
            .join(User, User.id == Annotation.user_id)
            .where(Annotation.skipped.is_(False))
        ).all()
        total = s.scalar(select(func.count()).select_from(Annotation))
    db.dispose()
    stored = {(u, a) for u, a, _ in rows}
    per_user_item = {(u, item) for u, _, item in rows}
    return {
        "rows": total,
        "lost": len(acknowledged - stored),
        "duplicated": (len(rows) - len(per_user_item)) + (total - len(stored)),
        "unacknowledged_rows": len(stored - acknowledged),
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
    )


def run(
    db_url: str, annotators: int = 20, per_annotator: int = 50, dup_every: int = 10, overlap: int = 2
) -> dict:
    """The whole load test against ``db_url`` (a fresh database); returns the result dict."""
    import httpx

    from chatglm_rlhf.collect.annotate.process import start_server

    with tempfile.TemporaryDirectory() as tmp:
        token = setup(db_url, annotators, per_annotator, overlap, Path(tmp))
    stats = {"next_ms": [], "submit_ms": [], "acknowledged": set(), "errors": [], "duplicate_posts": 0}
    server = start_server(db_url)
    try:
        t0 = time.perf_counter()
        users = [f"ann{u:02d}" for u in range(annotators)]
        cpu0 = _cpu_seconds(server.proc.pid)
        asyncio.run(_all(server.url, users, per_annotator, dup_every, stats))
        wall = time.perf_counter() - t0
        server_cpu = _cpu_seconds(server.proc.pid) - cpu0
    finally:
        server.kill()  # SIGKILL, like a crash: what was acknowledged must still be there
    result = check_db(db_url, stats["acknowledged"])
    restarted = start_server(db_url)
    try:
        r = httpx.get(
            f"{restarted.url}/api/v1/admin/projects/{PROJECT}/stats",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
            timeout=60,
        )
        after_restart = r.json()["done"]
    finally:
        restarted.stop()
    backend = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    return {
        "backend": backend,
        "annotators": annotators,
        "per_annotator": per_annotator,
        "expected_rows": annotators * per_annotator,
        **result,
        "rows_after_restart": after_restart,
        "duplicate_posts": stats["duplicate_posts"],
        "retries": stats.get("retries", 0),
        "errors": stats["errors"][:20],
        "wall_s": round(wall, 2),
        "submissions_per_s": round(len(stats["submit_ms"]) / wall, 1),
        # CPU the server process used per submission (GET + POST): independent of other load on the box.
        "server_cpu_ms_per_submission": round(server_cpu * 1000 / max(1, len(stats["submit_ms"])), 1),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
        "submit_p50_ms": round(_pct(stats["submit_ms"], 50), 1),
        "submit_p95_ms": round(_pct(stats["submit_ms"], 95), 1),
        "next_item_p50_ms": round(_pct(stats["next_ms"], 50), 1),
        "next_item_p95_ms": round(_pct(stats["next_ms"], 95), 1),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def _all(base: str, users: list[str], n: int, dup_every: int, stats: dict) -> None:
    await asyncio.gather(*(annotator(base, u, n, dup_every, stats) for u in users))


def format_table(results: list[dict]) -> str:
    cols = [
        ("backend", "backend"), ("rows", "rows"), ("expected_rows", "expected"), ("lost", "lost"),
        ("duplicated", "dup"), ("retries", "retries"), ("rows_after_restart", "after kill+restart"), ("submit_p50_ms", "submit p50 ms"),
        ("submit_p95_ms", "submit p95 ms"), ("next_item_p50_ms", "next p50 ms"), ("next_item_p95_ms", "next p95 ms"),
        ("submissions_per_s", "subm/s"), ("server_cpu_ms_per_submission", "server CPU ms/subm"),
        ("wall_s", "wall s"), ("load_average_1m", "load avg"),
    ]  # fmt: skip
    head = " | ".join(title for _, title in cols)
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(" | ".join(str(r.get(key, "")).rjust(len(title)) for key, title in cols))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotators", type=int, default=20)
    p.add_argument("--per-annotator", type=int, default=50)
    p.add_argument("--dup-every", type=int, default=10, help="post every n-th form twice (0: never)")
    p.add_argument("--pg-url", default=pg_url_from_env(), help="PostgreSQL server for a second run")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run(str(Path(tmp) / "load.db"), args.annotators, args.per_annotator, args.dup_every))
    if args.pg_url:
        with fresh_postgres(args.pg_url) as url:
            results.append(run(url, args.annotators, args.per_annotator, args.dup_every))
    else:
        print("PostgreSQL: skipped (no --pg-url, $CHATGLM_RLHF_TEST_PG_URL or " + PG_URL_FILE + ")")
    print(format_table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    bad = [
        r for r in results if r["rows"] != r["expected_rows"] or r["lost"] or r["duplicated"] or r["errors"]
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
