"""Alembic migrations of the annotation database (run by ``migrate`` and at server start-up)."""
