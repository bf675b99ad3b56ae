"""Database URLs, engines, sessions and migrations.

SQLite (the default, a file) runs in WAL mode so that readers never block the writer, with
``synchronous=FULL`` so that a committed annotation survives a killed server and a power cut. Every
write transaction opens with ``BEGIN IMMEDIATE``: a deferred transaction that reads and then writes
can fail with SQLITE_BUSY when another writer committed in between, which would lose a submission.
Inside one server process writes also queue on a lock, which is fairer than SQLite's sleep-and-retry.

On PostgreSQL every round trip to the server counts (a busy machine adds milliseconds of scheduling to
each): a pooled connection is pinged before use only after it sat idle (:data:`PING_AFTER_IDLE_S`),
and ``lookup()`` reads without BEGIN and COMMIT (see there).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from chatglm_rlhf.errors import UserError

DEFAULT_DB = "annotate.db"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# A PostgreSQL connection back in the pool for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_S = 1.0


def normalize_url(db: str) -> str:
    """A SQLAlchemy URL from ``--db``: a URL as given, or a file path meaning a SQLite file."""
    db = db.strip()
    if not db:
        raise UserError("--db is empty: give a SQLite file path or a postgresql+psycopg:// URL")
    if "://" not in db:
        path = Path(db).expanduser().resolve()
        if not path.parent.is_dir():
            raise UserError(f"--db {db}: directory {path.parent} does not exist")
        return f"sqlite:///{path}"
    if db.startswith("postgresql://") or db.startswith("postgres://"):
        # psycopg 3 is the driver we ship with; SQLAlchemy's bare postgresql:// means psycopg2.
        db = "postgresql+psycopg://" + db.split("://", 1)[1]
    try:
        url = make_url(db)
    except ArgumentError as e:
        raise UserError(f"--db {db!r} is not a database URL: {e}") from e
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise UserError(f"--db {db!r}: only sqlite and postgresql are supported")
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise UserError("--db: an in-memory SQLite database cannot be shared by the server; give a file")
    return db


def redact(url: str) -> str:
    """The URL without its password, for printing."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, instead of pysqlite's own guesswork.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only if it sat idle for PING_AFTER_IDLE_S.

    ``pool_pre_ping`` pings on every checkout: one more round trip per transaction, two per form
    post. A connection that idled may have been dropped (a server restart, an idle timeout): a
    failed ping makes the pool discard it and connect afresh, as ``pool_pre_ping`` does. One used
    less than PING_AFTER_IDLE_S ago is handed out as it is; if the server dropped it in that moment,
    the request using it fails (as any request in flight during a restart does), and SQLAlchemy then
    discards every pooled connection as old as that one, so the requests after it reconnect.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, record, _proxy) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as e:  # noqa: BLE001 - any failure: discard it, the pool connects again
            raise DisconnectionError(f"pooled connection failed its ping: {e}") from e


class Database:
    """An engine plus session factories: ``write()`` (serialised on SQLite), ``read()`` and ``lookup()``."""

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = normalize_url(url)
        backend = make_url(self.url).get_backend_name()
        self.is_sqlite = backend == "sqlite"
        if self.is_sqlite:
            self.engine = create_engine(self.url, echo=echo, pool_size=8, max_overflow=32)
            _sqlite_setup(self.engine)
            write_engine = self.engine.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(self.url, echo=echo, pool_size=10, max_overflow=30)
            _ping_when_idle(self.engine)
            write_engine = self.engine
        self._write = sessionmaker(write_engine, expire_on_commit=False)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        # PostgreSQL in READ COMMITTED gives each statement its own snapshot inside a transaction
        # too, so for plain reads a transaction only costs its BEGIN and COMMIT round trips.
        lookup_engine = (
            self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._lookup = sessionmaker(lookup_engine, expire_on_commit=False)
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction that commits on success and rolls back on any exception."""
        with self._write_lock or nullcontext(), self._write() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def lookup(self) -> Iterator[Session]:
        """Reads on every request's path (who is asking; the item page): on PostgreSQL without a
        transaction, each statement committed on its own, which saves the BEGIN and COMMIT round
        trips and reads the same as READ COMMITTED's one snapshot per statement. On SQLite the same as
        ``read()`` (one snapshot for all). Not for server-side cursors (``yield_per``): use ``read()``."""
        with self._lookup() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def migrate(db: Database) -> tuple[str | None, str]:
    """Upgrade the schema to the newest migration; returns (revision before, revision after)."""
    from alembic import command

    before = db.current_revision()
    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, head_revision()


def require_current_schema(db: Database) -> None:
    """Refuse to work on a database that was never migrated (or is behind), with the fix in the message."""
    rev = db.current_revision()
    if rev != head_revision():
        state = "is not initialised" if rev is None else f"is at schema {rev}, not {head_revision()}"
        raise UserError(
            f"database {redact(db.url)} {state}: run `chatglm-rlhf annotate migrate --db ...` first"
        )
