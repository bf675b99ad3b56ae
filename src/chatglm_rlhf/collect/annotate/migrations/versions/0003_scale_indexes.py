"""Indexes for the per-request queries at the paper's scale (221,866 pairs).

* items (project_id, n_active DESC, id): the exact order the next item is picked in (fullest first,
  then by id). The old index (project_id, n_active) gave the fullest items first but not by id within
  them, so every pick sorted all open items of a project (~200,000 rows). Now the query stops at the
  first item it may give.
* assignments (user_id, project_id, status): the annotator's counts on every item page and their open
  item are read from the index alone; (user_id, status) had to visit every assignment row of the
  user, thousands per page view in a large project.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_pick", "items", ["project_id", sa.text("n_active DESC"), "id"], unique=False)
    op.drop_index("ix_items_project_active", table_name="items")
    op.create_index("ix_assignments_user_project_status", "assignments", ["user_id", "project_id", "status"])
    op.drop_index("ix_assignments_user_status", table_name="assignments")


def downgrade() -> None:
    op.create_index("ix_items_project_active", "items", ["project_id", "n_active"], unique=False)
    op.drop_index("ix_items_pick", table_name="items")
    op.create_index("ix_assignments_user_status", "assignments", ["user_id", "status"])
    op.drop_index("ix_assignments_user_project_status", table_name="assignments")
