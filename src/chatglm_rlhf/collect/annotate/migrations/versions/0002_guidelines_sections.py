"""guidelines_seen.sections: a digest of each guidelines section the user confirmed, so that the
sections changed since then can be marked when the guidelines are shown again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("guidelines_seen") as batch:
        batch.add_column(sa.Column("sections", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("guidelines_seen") as batch:
        batch.drop_column("sections")
