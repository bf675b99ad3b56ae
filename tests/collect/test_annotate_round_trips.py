"""Round trips to the database per request, and the PostgreSQL paths that save them.

On a busy machine every round trip to PostgreSQL costs milliseconds of scheduling, so the form post
(submit) and the item page (next) are held to a count. The PostgreSQL cases need a server
($CHATGLM_RLHF_TEST_PG_URL or the URL file of scripts/ci_annotate_services.sh) and skip without one.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, select, text

from chatglm_rlhf.collect.annotate import db as dbmod
from chatglm_rlhf.collect.annotate import service
from chatglm_rlhf.collect.annotate.db import Database, migrate
from chatglm_rlhf.collect.annotate.models import Annotation, Assignment, Item


@pytest.fixture
def pg_url(repo_script, helpers):
    """A fresh, empty database on the known PostgreSQL server (dropped afterwards), else skip."""
    with helpers.scratch_postgres(repo_script("benchmarks/annotate_load.py")) as db_url:
        yield db_url


def _project(url: str, helpers, tmp_path: Path) -> Database:
    """The ``env`` fixture's project on ``url``: 4 samples x 3 responses, overlap 2, ann1..ann3."""
    db = Database(url)
    migrate(db)
    path = helpers.write_candidates(tmp_path / "c.jsonl", helpers.candidates())
    service.load_file(db, str(path), "demo", overlap=2, pair_mode="all")
    with db.write() as s:
        for name in ("ann1", "ann2", "ann3"):
            service.create_user(s, name, helpers.password)
    return db


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_db(request, tmp_path, helpers, fast_hash):
    url = str(tmp_path / "rt.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    db = _project(url, helpers, tmp_path)
    yield db
    db.dispose()


class RoundTrips:
    """Statements sent to the database, plus (PostgreSQL) the BEGIN and COMMIT that psycopg sends on
    its own: the round trips a request makes."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[str] = []
        if db.is_sqlite:

            @event.listens_for(db.engine, "before_cursor_execute")
            def _sql(_conn, _cur, statement, *_args) -> None:
                if not statement.lstrip().upper().startswith(("PRAGMA", "BEGIN")):  # not round trips
                    self.log.append(statement.split()[0].upper())

            return
        import psycopg
        from psycopg import pq

        idle = pq.TransactionStatus.IDLE
        execute, commit = psycopg.Cursor.execute, psycopg.Connection.commit

        def counted_execute(cur, query, *a, **k):
            if not cur.connection.autocommit and cur.connection.pgconn.transaction_status == idle:
                self.log.append("BEGIN")
            self.log.append(str(query).split()[0].upper() if str(query).split() else str(query))
            return execute(cur, query, *a, **k)

        def counted_commit(conn):
            if conn.pgconn.transaction_status != idle:
                self.log.append("COMMIT")
            return commit(conn)

        monkeypatch.setattr(psycopg.Cursor, "execute", counted_execute)
        monkeypatch.setattr(psycopg.Connection, "commit", counted_commit)

    def during(self, fn, *args, **kwargs):
        self.log.clear()
        result = fn(*args, **kwargs)
        return result, list(self.log)


def test_round_trips_of_the_item_page_and_the_form_post(backend_db, helpers, monkeypatch):
    from fastapi.testclient import TestClient

    from chatglm_rlhf.collect.annotate.app import create_app

    client = TestClient(create_app(backend_db), follow_redirects=False)
    helpers.login(client, "ann1")
    page = helpers.start(client)  # the first item is assigned by the page (a write)
    trips = RoundTrips(backend_db, monkeypatch)
    for i in range(3):
        r, post = trips.during(client.post, helpers.form_action(page), data=helpers.answer(page, 1 + i))
        assert r.status_code == 303 and r.headers["location"] == "/annotate/demo"
        r, get = trips.during(client.get, "/annotate/demo")
        assert r.status_code == 200 and 'id="annotate-form"' in r.text
        page = r.text
    # Post: who is asking (1); then the locked assignment with its project and key (1), the annotation
    # (1), and on PostgreSQL one statement that closes the assignment and takes and assigns the next
    # item (SQLite: three). Page: who is asking (1); the project, the guidelines confirmation, the open
    # item with its pair, the counts (4).
    assert post[:1] == get[:1] == ["SELECT"]  # no ping, no BEGIN or COMMIT around the session lookup
    if backend_db.is_sqlite:
        assert post[1:] == ["SELECT", "INSERT", "UPDATE", "UPDATE", "INSERT"]
    else:
        assert post[1:] == ["BEGIN", "SELECT", "INSERT", "WITH", "COMMIT"]
    assert get[1:] == ["SELECT"] * 4


def test_pick_order_is_fullest_first_then_by_id_on_postgres(pg_url, helpers, fast_hash, tmp_path):
    db = _project(pg_url, helpers, tmp_path)
    with db.write() as s:
        project = service.get_project(s, "demo")
        a1, a2, a3 = (service.get_user(s, f"ann{n}") for n in (1, 2, 3))
        helpers.check_pick_order(s, project, a1, a2, a3)
        # No second open item while one is open: the take's guard.
        assert s.scalar(service.take_statement(a2, project, "skip_locked")) is None
    db.dispose()


def test_the_take_reads_its_index_without_sorting_on_postgres(pg_url, helpers, fast_hash, tmp_path):
    db = _project(pg_url, helpers, tmp_path)
    with db.write() as s:
        user, project = service.get_user(s, "ann1"), service.get_project(s, "demo")
        stmt = service.take_statement(user, project, "skip_locked")
        sql = stmt.compile(s.get_bind(), compile_kwargs={"literal_binds": True})
        s.execute(text("SET LOCAL enable_seqscan = off"))  # 12 rows: a table this small is scanned
        plan = "\n".join(row[0] for row in s.execute(text(f"EXPLAIN {sql}")))
    assert "ix_items_pick" in plan and "Sort" not in plan, plan
    assert "FOR NO KEY UPDATE OF items SKIP LOCKED" in str(sql)
    db.dispose()


def test_a_duplicate_post_waiting_on_the_lock_gets_the_first_ones_row(pg_url, helpers, fast_hash, tmp_path):
    """The second of two posts of one form waits for the first's lock; its lookup of the key ran in
    a snapshot from before that commit, so it must look again once it sees the item done."""
    db = _project(pg_url, helpers, tmp_path)
    with db.write() as s:
        user, project = service.get_user(s, "ann1"), service.get_project(s, "demo")
        assignment_id, user_id = service.next_assignment(s, user, project).id, user.id
    sub = service.Submission(
        "dup-key-0001",
        overall=2,
        scores_left=dict.fromkeys(service.CRITERIA, 3),
        scores_right=dict.fromkeys(service.CRITERIA, 4),
    )
    second: list = []

    def post_again() -> None:
        with db.write() as s:
            ann, created = service.submit(s, user_id, assignment_id, sub)
            second.append((ann.id, created))

    with db.write() as s:
        first_id = service.submit(s, user_id, assignment_id, sub)[0].id
        worker = threading.Thread(target=post_again)
        worker.start()
        _wait_for_a_lock(db, "the second post did not wait for the first's lock")
    worker.join(10)
    assert second == [(first_id, False)]
    with db.read() as s:
        assert s.scalar(select(Annotation.id).where(Annotation.assignment_id == assignment_id)) == first_id
        assert len(s.scalars(select(Assignment).where(Assignment.status == "pending")).all()) == 1
    db.dispose()


def _wait_for_a_lock(db: Database, message: str) -> None:
    """Up to 10 s for another session to block on a lock (the thread under test), else fail."""
    deadline = time.monotonic() + 10
    while not _waiting_on_a_lock(db) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _waiting_on_a_lock(db), message


def _waiting_on_a_lock(db: Database) -> bool:
    with db.lookup() as s:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        return s.scalar(text(query)) > 0


def test_an_idle_connection_the_server_dropped_is_replaced(pg_url, monkeypatch):
    """Pooled connections are pinged only after PING_AFTER_IDLE_S idle (not on every checkout)."""
    db = Database(pg_url)
    admin = create_engine(db.url, isolation_level="AUTOCOMMIT")

    def backend_pid() -> int:
        with db.lookup() as s:
            return s.scalar(text("SELECT pg_backend_pid()"))

    def drop(pid: int) -> None:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_S", 0.05)
    pid = backend_pid()
    drop(pid)
    time.sleep(0.2)
    assert backend_pid() != pid  # pinged, found dead, replaced: the request never saw it
    # Used a moment ago: not pinged. A connection dropped in that moment fails its one request, and
    # SQLAlchemy then discards every pooled connection of that age, so the next request works.
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_S", 60.0)
    pid = backend_pid()
    drop(pid)
    time.sleep(0.2)
    with pytest.raises(Exception, match="terminat|closed|connection"):
        backend_pid()
    assert backend_pid() != pid
    admin.dispose()
    db.dispose()


def _judgement(key: str, skip: bool = False) -> service.Submission:
    scores = dict.fromkeys(service.CRITERIA, 3)
    return service.Submission(key, skip=skip, overall=2, scores_left=scores, scores_right=scores)


def test_close_and_assign_waits_when_every_open_item_is_locked(pg_url, helpers, fast_hash, tmp_path):
    """SKIP LOCKED finds nothing while another transaction holds every item: the blocking attempt
    then waits for it, and the judged assignment is closed either way (one statement, then one more)."""
    db = _project(pg_url, helpers, tmp_path)
    with db.write() as s:
        user, project = service.get_user(s, "ann1"), service.get_project(s, "demo")
        first = service.next_assignment(s, user, project)
        first_id, user_id = first.id, user.id
    done: list = []

    def post() -> None:
        with db.write() as s:
            ann, created = service.submit(s, user_id, first_id, _judgement("wait-key-01"))
            assert s.get(Assignment, first_id).status == "done"  # the session sees what was stored
            done.append(created)

    with db.write() as s:
        s.execute(select(Item.id).with_for_update()).all()  # every item, locked until this commits
        worker = threading.Thread(target=post)
        worker.start()
        _wait_for_a_lock(db, "the take did not wait for the locked items")
    worker.join(10)
    assert done == [True]
    with db.read() as s:
        states = dict(s.execute(select(Assignment.id, Assignment.status)).all())
        assert states[first_id] == "done" and list(states.values()).count("pending") == 1
        second = s.scalars(select(Assignment).where(Assignment.status == "pending")).one()
        assert s.get(Item, second.item_id).n_active == 1 and second.item_id != first.item_id
    db.dispose()


def test_no_second_open_item_after_a_judgement(pg_url, helpers, fast_hash, tmp_path):
    """A user with two open items (possible only through a race elsewhere) who judges one gets no
    third: the take's guard leaves out only the assignment being closed."""
    db = _project(pg_url, helpers, tmp_path)
    with db.write() as s:
        user, project = service.get_user(s, "ann1"), service.get_project(s, "demo")
        first = service.next_assignment(s, user, project)
        assert s.scalar(service.take_statement(user, project, "skip_locked")) is None  # one is open
        item = s.scalars(select(Item).where(Item.id != first.item_id).order_by(Item.id)).first()
        item.n_active += 1
        s.add(Assignment(item_id=item.id, user_id=user.id, project_id=project.id, status="pending"))
    with db.write() as s:
        service.submit(s, user.id, first.id, _judgement("two-open-01"))
    with db.read() as s:
        pending = s.scalars(select(Assignment.item_id).where(Assignment.status == "pending")).all()
    assert pending == [item.id]
    db.dispose()
