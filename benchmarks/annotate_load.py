"""Load test of the annotation app: N concurrent simulated annotators x M acknowledged judgements each.

Each simulated annotator logs in through the real login form, confirms the guidelines, then loops:
GET the next item page, POST the filled form (every ``--dup-every``-th form is posted twice at the
same moment, as a double click would). The server is a real ``annotate serve`` process on 127.0.0.1;
``--kills N`` SIGKILLs it N times while posts are in flight and restarts it on the same port. At the
end it is SIGKILLed again, the database is checked (lost, duplicated, never-acknowledged rows, item
counters), the server is restarted and its stats endpoint must report the same count.

    python benchmarks/annotate_load.py                      # SQLite file in a temp dir
    python benchmarks/annotate_load.py --kills 3 --pg-url postgresql+psycopg://user:pw@127.0.0.1/postgres

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
import random
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
RETRY_S = 60.0  # how long a client keeps retrying while the server is down (a restart takes seconds)
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


async def _login(client, username: str, stats: dict) -> None:
    page = await _send(client, "GET", "/login", stats)
    form = {"username": username, "password": PASSWORD, "csrf_token": _hidden(page.text)["csrf_token"]}
    r = await _send(client, "POST", "/login", stats, data=form)
    assert r.status_code == 303, f"login {username}: {r.status_code}"
    url = f"/annotate/{PROJECT}/guidelines"
    page = await _send(client, "GET", url, stats)
    await _send(client, "POST", url, stats, data={"csrf_token": _hidden(page.text)["csrf_token"]})


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


class ReplyLost(Exception):
    """A form post whose connection broke before the reply, by a client that does not post it again."""


def new_stats() -> dict:
    """The counters the simulated annotators share (one event loop, so no locking)."""
    return {
        "next_ms": [], "submit_ms": [], "acknowledged": set(), "errors": [], "duplicate_posts": 0,
        "retries": 0, "posts_in_flight": 0, "lost_replies": 0, "kills": [], "reload_users": set(),
    }  # fmt: skip


async def _send(client, method: str, url: str, stats: dict, repeat: bool = True, **kw):
    """One request, sent again while the connection breaks before a response comes (for RETRY_S).

    Safe for the form posts too: each carries its idempotency key, so a repeat of a post that was
    committed makes no second row. With ``repeat=False`` a broken post raises :class:`ReplyLost`.
    """
    import httpx

    deadline, delay, post = time.monotonic() + RETRY_S, 0.05, int(method == "POST")
    while True:
        stats["posts_in_flight"] += post
        try:
            return await client.request(method, url, **kw)
        except httpx.TransportError:
            if not repeat:
                raise ReplyLost(url) from None
            if time.monotonic() > deadline:
                raise
            stats["retries"] += 1
            await asyncio.sleep(delay)
            delay = min(0.5, delay * 2)
        finally:
            stats["posts_in_flight"] -= post


async def _post(client, action: str, data: dict, double: bool, stats: dict, repeat: bool):
    """The form post (twice at the same moment for ``double``); the reply that counts, or ReplyLost."""
    if not double:
        return await _send(client, "POST", action, stats, repeat, data=data), None
    stats["duplicate_posts"] += 1  # a double click: both copies in flight at once, one row, two 303s
    replies = await asyncio.gather(
        _send(client, "POST", action, stats, repeat, data=data),
        _send(client, "POST", action, stats, repeat, data=data),
        return_exceptions=True,
    )
    got = [r for r in replies if not isinstance(r, BaseException)]
    failed = [r for r in replies if isinstance(r, BaseException) and not isinstance(r, ReplyLost)]
    if failed:
        raise failed[0]
    if not got:
        raise ReplyLost(action)
    return got[0], (got[1] if len(got) > 1 else None)


async def annotator(
    base: str, username: str, n: int, dup_every: int, stats: dict, think_s: float = 0.0, reload: bool = False
) -> None:
    """Log in, then judge items until ``n`` judgements were acknowledged (a 303 to the next item).

    When a post's connection breaks (the server was killed), the client posts it again with the same
    idempotency key, or with ``reload`` it gives up on that reply and loads the item page again, as
    a person closing the error page would: a judgement committed just before the kill is then stored
    without the client having seen it acknowledged (at most one per client and kill).
    """
    import httpx

    if reload:
        stats["reload_users"].add(username)
    pace = random.Random(username)  # think times differ per annotator but are the same every run
    async with httpx.AsyncClient(
        base_url=base, trust_env=False, follow_redirects=False, timeout=120
    ) as client:
        await _login(client, username, stats)
        acked = 0
        for i in range(4 * n):  # bounded: a lost reply costs one more round
            if acked == n:
                return
            if think_s:
                await asyncio.sleep(think_s * pace.uniform(0.5, 1.5))
            retries, t0 = stats["retries"], time.perf_counter()
            page = await _send(client, "GET", f"/annotate/{PROJECT}", stats)
            t1 = time.perf_counter()
            if 'id="annotate-form"' not in page.text:
                stats["errors"].append(f"{username}: no item at submission {i} ({page.status_code})")
                return
            action, data = _form(page.text, i)
            try:
                double = bool(dup_every) and i % dup_every == 0
                r, again = await _post(client, action, data, double, stats, repeat=not reload)
            except ReplyLost:
                stats["lost_replies"] += 1
                continue
            t2 = time.perf_counter()
            if again is not None and not _to_next(again):
                stats["errors"].append(f"{username}: duplicate post {i} -> {again.status_code}")
            if not _to_next(r):
                stats["errors"].append(
                    f"{username}: submit {i} -> {r.status_code} {r.headers.get('location')}"
                )
                continue
            if stats["retries"] == retries:  # a round that waited for a restart is not a latency
                stats["next_ms"].append((t1 - t0) * 1000)
                stats["submit_ms"].append((t2 - t1) * 1000)
            stats["acknowledged"].add((username, int(action.rsplit("/", 1)[1])))
            acked += 1
        stats["errors"].append(f"{username}: only {acked} of {n} judgements acknowledged")


def _to_next(reply) -> bool:
    """A submission's acknowledgement: 303 to the next item (a replayed key answers the same)."""
    return reply.status_code == 303 and reply.headers.get("location") == f"/annotate/{PROJECT}"


def check_db(db_url: str, acknowledged: set[tuple[str, int]], reload_users: set[str] = frozenset()) -> dict:
    """Rows, lost (acknowledged but absent), duplicated (a pair twice for a user, or extra rows), rows
    nobody saw acknowledged (all of them, and those of clients that post again: must be none), and
    the books that must balance after any crash: every item's ``n_active`` equal to its pending and
    done assignments, and at most one open item per annotator."""
    from sqlalchemy import func, select

    from chatglm_rlhf.collect.annotate.db import Database
    from chatglm_rlhf.collect.annotate.models import Annotation, Assignment, Item, User

    db = Database(db_url)
    with db.read() as s:
        rows = s.execute(
            select(User.username, Annotation.assignment_id, Annotation.item_id)
            .join(User, User.id == Annotation.user_id)
            .where(Annotation.skipped.is_(False))
        ).all()
        total = s.scalar(select(func.count()).select_from(Annotation))
        active = (
            select(Assignment.item_id, func.count().label("n"))
            .where(Assignment.status != "skipped")
            .group_by(Assignment.item_id)
            .subquery()
        )
        off = select(func.count()).select_from(Item).outerjoin(active, active.c.item_id == Item.id)
        inconsistent = s.scalar(off.where(Item.n_active != func.coalesce(active.c.n, 0)))
        pending = (
            select(Assignment.user_id).where(Assignment.status == "pending").group_by(Assignment.user_id)
        )
        two_open = s.scalar(select(func.count()).select_from(pending.having(func.count() > 1).subquery()))
    db.dispose()
    stored = {(u, a) for u, a, _ in rows}
    per_user_item = {(u, item) for u, _, item in rows}
    unacknowledged = stored - acknowledged
    return {
        "rows": total,
        "lost": len(acknowledged - stored),
        "duplicated": (len(rows) - len(per_user_item)) + (total - len(stored)),
        "unacknowledged_rows": len(unacknowledged),
        "unacknowledged_rows_reposting": sum(1 for u, _ in unacknowledged if u not in reload_users),
        "inconsistent_items": inconsistent,
        "users_with_two_open_items": two_open,
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
    )


class Servers:
    """The server under test; after a SIGKILL it is restarted on the same port (as a supervisor
    would), so that clients only see refused connections until it is back. CPU is summed over runs."""

    def __init__(self, db_url: str) -> None:
        from chatglm_rlhf.collect.annotate.process import start_server

        self.db_url, self._start = db_url, start_server
        self.current = start_server(db_url)
        self.url, self.cpu_s = self.current.url, 0.0
        self._cpu0 = _cpu_seconds(self.current.proc.pid)

    def kill(self) -> None:
        """SIGKILL, like a crash: what was acknowledged must still be there."""
        if self.current.proc.poll() is None:
            self.cpu_s += _cpu_seconds(self.current.proc.pid) - self._cpu0
        self.current.kill()

    def restart(self) -> None:
        self.current = self._start(self.db_url, extra_args=("--port", self.url.rsplit(":", 1)[1]))
        self._cpu0 = _cpu_seconds(self.current.proc.pid)


async def _kill_while_busy(servers: Servers, kills: int, total: int, stats: dict, tasks: list) -> None:
    """SIGKILL the server ``kills`` times, spread over the run, each time with a post in flight."""
    for j in range(1, kills + 1):
        target = total * j // (kills + 1)
        while len(stats["acknowledged"]) < target or stats["posts_in_flight"] == 0:
            if all(t.done() for t in tasks):
                return
            await asyncio.sleep(0.002)
        stats["kills"].append(
            {"acknowledged": len(stats["acknowledged"]), "posts_in_flight": stats["posts_in_flight"]}
        )
        servers.kill()
        await asyncio.to_thread(servers.restart)


def run(
    db_url: str,
    annotators: int = 20,
    per_annotator: int = 50,
    dup_every: int = 10,
    overlap: int = 2,
    kills: int = 0,
) -> dict:
    """The whole load test against ``db_url`` (a fresh database); returns the result dict.

    With ``kills`` the server is SIGKILLed that many times while posts are in flight and restarted;
    every other client then loads the page again instead of posting again (see :func:`annotator`).
    """
    with tempfile.TemporaryDirectory() as tmp:
        token = setup(db_url, annotators, per_annotator, overlap, Path(tmp))
    stats = new_stats()
    servers = Servers(db_url)
    try:
        t0 = time.perf_counter()
        users = [f"ann{u:02d}" for u in range(annotators)]
        asyncio.run(_all(servers.url, users, per_annotator, dup_every, stats, servers=servers, kills=kills))
        wall = time.perf_counter() - t0
    finally:
        servers.kill()
    result = check_db(db_url, stats["acknowledged"], stats["reload_users"])
    result["rows_after_restart"] = _done_after_restart(servers, token)
    backend = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    return {
        "backend": backend,
        "annotators": annotators,
        "per_annotator": per_annotator,
        "expected_rows": annotators * per_annotator,
        "acknowledged": len(stats["acknowledged"]),
        **result,
        **{k: stats[k] for k in ("duplicate_posts", "retries", "lost_replies", "kills")},
        "errors": stats["errors"][:20],
        "wall_s": round(wall, 2),
        "submissions_per_s": round(len(stats["acknowledged"]) / wall, 1),
        # CPU the server process used per submission (GET + POST): independent of other load on the box.
        "server_cpu_ms_per_submission": round(servers.cpu_s * 1000 / max(1, len(stats["acknowledged"])), 1),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
        "latency_samples": len(stats["submit_ms"]),
        "submit_p50_ms": round(_pct(stats["submit_ms"], 50), 1),
        "submit_p95_ms": round(_pct(stats["submit_ms"], 95), 1),
        "next_item_p50_ms": round(_pct(stats["next_ms"], 50), 1),
        "next_item_p95_ms": round(_pct(stats["next_ms"], 95), 1),
    }


def _done_after_restart(servers: Servers, token: str) -> int:
    """Judgements the restarted server's stats endpoint counts."""
    import httpx

    servers.restart()
    url, headers = (
        f"{servers.url}/api/v1/admin/projects/{PROJECT}/stats",
        {"Authorization": f"Bearer {token}"},
    )
    try:
        return httpx.get(url, headers=headers, trust_env=False, timeout=60).json()["done"]
    finally:
        servers.current.stop()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def _all(
    base: str,
    users: list[str],
    n: int,
    dup_every: int,
    stats: dict,
    servers: Servers | None = None,
    kills: int = 0,
    think_s: float = 0.0,
) -> None:
    """The annotators at once; with ``kills``, every other one reloads instead of posting again."""
    tasks = [
        asyncio.create_task(
            annotator(base, u, n, dup_every, stats, think_s, reload=bool(kills) and k % 2 == 1)
        )
        for k, u in enumerate(users)
    ]
    if kills:
        await _kill_while_busy(servers, kills, len(users) * n, stats, tasks)
    await asyncio.gather(*tasks)


def format_table(results: list[dict]) -> str:
    cols = [
        ("backend", "backend"), ("rows", "rows"), ("acknowledged", "acked"), ("lost", "lost"),
        ("duplicated", "dup"), ("unacknowledged_rows", "unacked"), ("inconsistent_items", "bad items"),
        ("retries", "retries"), ("rows_after_restart", "after kill+restart"), ("submit_p50_ms", "submit p50 ms"),
        ("submit_p95_ms", "submit p95 ms"), ("next_item_p50_ms", "next p50 ms"), ("next_item_p95_ms", "next p95 ms"),
        ("submissions_per_s", "subm/s"), ("server_cpu_ms_per_submission", "server CPU ms/subm"),
        ("wall_s", "wall s"), ("load_average_1m", "load avg"),
    ]  # fmt: skip
    head = " | ".join(title for _, title in cols) + " | kills"
    lines = [head, "-" * len(head)]
    for r in results:
        cells = [str(r.get(key, "")).rjust(len(title)) for key, title in cols]
        lines.append(" | ".join(cells) + f" | {len(r.get('kills', []))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotators", type=int, default=20)
    p.add_argument("--per-annotator", type=int, default=50)
    p.add_argument("--dup-every", type=int, default=10, help="post every n-th form twice (0: never)")
    p.add_argument("--kills", type=int, default=0, help="SIGKILL and restart the server this often mid-run")
    p.add_argument("--pg-url", default=pg_url_from_env(), help="PostgreSQL server for a second run")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    shape = (args.annotators, args.per_annotator, args.dup_every, 2, args.kills)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run(str(Path(tmp) / "load.db"), *shape))
    if args.pg_url:
        with fresh_postgres(args.pg_url) as url:
            results.append(run(url, *shape))
    else:
        print("PostgreSQL: skipped (no --pg-url, $CHATGLM_RLHF_TEST_PG_URL or " + PG_URL_FILE + ")")
    print(format_table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 1 if any(problems(r) for r in results) else 0


def problems(r: dict) -> list[str]:
    """What is wrong with a run's result: every acknowledged row there once, the rest bounded."""
    out = [
        f"{k} {r[k]}"
        for k in ("lost", "duplicated", "inconsistent_items", "users_with_two_open_items")
        if r[k]
    ]
    out += r["errors"]
    if r["acknowledged"] != r["expected_rows"]:
        out.append(f"acknowledged {r['acknowledged']} of {r['expected_rows']}")
    if r["rows"] != r["acknowledged"] + r["unacknowledged_rows"] or r["rows_after_restart"] != r["rows"]:
        out.append(f"rows {r['rows']}, after restart {r['rows_after_restart']}")
    bound = r["annotators"] * len(r["kills"])  # at most one reply lost per client and kill
    if r["unacknowledged_rows"] > bound or r["unacknowledged_rows_reposting"]:
        out.append(f"{r['unacknowledged_rows']} rows never acknowledged (bound {bound})")
    return out


if __name__ == "__main__":
    sys.exit(main())
