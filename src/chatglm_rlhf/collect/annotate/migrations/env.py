"""Alembic environment: always run programmatically with a live connection (see ``db.migrate``)."""

from __future__ import annotations

from alembic import context

from chatglm_rlhf.collect.annotate.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `chatglm-rlhf annotate migrate`, not the alembic CLI")

# render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table instead.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
