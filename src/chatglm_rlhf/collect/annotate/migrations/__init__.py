"""Alembic migrations of the annotation database (run by ``init-db`` and at server start-up)."""
