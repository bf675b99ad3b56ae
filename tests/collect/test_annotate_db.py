"""Database: migrations match the models, SQLite runs in WAL mode, URLs are checked."""

from __future__ import annotations

import sqlite3

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from chatglm_rlhf.collect.annotate.db import Database, head_revision, migrate, normalize_url
from chatglm_rlhf.collect.annotate.models import Base


def test_migrations_create_exactly_the_models_schema(tmp_path):
    db = Database(str(tmp_path / "m.db"))
    assert migrate(db) == (None, head_revision())
    assert migrate(db) == (head_revision(), head_revision())  # idempotent
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.dispose()


def test_sqlite_is_in_wal_mode_with_full_sync(tmp_path):
    path = tmp_path / "w.db"
    db = Database(str(path))
    migrate(db)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_normalize_url(tmp_path):
    assert normalize_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    assert normalize_url("postgresql://u:p@127.0.0.1/db") == "postgresql+psycopg://u:p@127.0.0.1/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
