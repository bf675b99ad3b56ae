"""samples.round: the feedback round whose batch brought a sample (issue 30).

A later round sends the current policy's answers to the same prompts, under the same sample ids: a
sample is now unique per (project, round, sample id) instead of per (project, sample id). Rows loaded
before this migration are round 1 (the server default), which is what they were: SFT candidates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite rebuilds the table (it cannot drop a constraint in place); PostgreSQL alters it.
    with op.batch_alter_table("samples") as batch:
        batch.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="1"))
        batch.drop_constraint("uq_samples_project_sample", type_="unique")
        batch.create_unique_constraint(
            "uq_samples_project_round_sample", ["project_id", "round", "sample_id"]
        )


def downgrade() -> None:
    # Fails (on the unique constraint) when one id was loaded in two rounds: nothing is dropped silently.
    with op.batch_alter_table("samples") as batch:
        batch.drop_constraint("uq_samples_project_round_sample", type_="unique")
        batch.create_unique_constraint("uq_samples_project_sample", ["project_id", "sample_id"])
        batch.drop_column("round")
