"""SQLAlchemy 2 models of the annotation app.

The schema is created and changed only by the Alembic migrations in ``migrations/versions``; a test
checks that these models and the migrations agree. Texts are stored as loaded (never HTML), and are
escaped when rendered.

* ``Project``: a candidates file's worth of work, with its guidelines and overlap.
* ``Sample``: one dialogue (history + prompt) with its k candidate responses, in a feedback round (1 for
  SFT candidates; a later round's batch holds the current policy's answers). A sample id is unique per
  project and round: the same prompt comes back in every round with new answers.
* ``Item``: one pair (i, j), i < j, of a sample's responses: the unit an annotator compares.
* ``Assignment``: an item given to one annotator (unique per item and user, so nobody sees a pair
  twice), with the display order chosen for that annotator.
* ``Annotation``: what the annotator submitted for an assignment (labels, or a skip); at most one per
  assignment, and at most one per (user, idempotency key), so a double-submitted form is one row.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

ROLES = ("admin", "annotator")
ASSIGNMENT_STATES = ("pending", "done", "skipped")


def utcnow() -> datetime:
    """Timezone-aware now; stored as UTC (SQLite keeps it as text, PostgreSQL as timestamptz)."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin', 'annotator')", name="ck_users_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="annotator")
    # sha256 of the API token: a stolen database does not give working tokens.
    api_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebSession(Base):
    """A login session: the cookie holds a random token, the table only its hash."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("overlap >= 1", name="ck_projects_overlap"),
        CheckConstraint("pair_mode IN ('all', 'adjacent', 'first')", name="ck_projects_pair_mode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # Deferred: up to 100k characters that only the guidelines pages need, not every request.
    guidelines_md: Mapped[str] = mapped_column(Text, default="", deferred=True)
    # Bumped on every edit so that annotators are shown changed guidelines again.
    guidelines_version: Mapped[int] = mapped_column(Integer, default=1)
    overlap: Mapped[int] = mapped_column(Integer, default=3)
    pair_mode: Mapped[str] = mapped_column(String(16), default="all")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("project_id", "round", "sample_id", name="uq_samples_project_round_sample"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    sample_id: Mapped[str] = mapped_column(String(255))
    # The feedback round whose batch brought the sample (migration 0004; older rows are round 1).
    round: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    prompt: Mapped[str] = mapped_column(Text)
    history: Mapped[list] = mapped_column(JSON, default=list)  # [{"role", "content"}, ...]
    responses: Mapped[list] = mapped_column(JSON, default=list)
    category: Mapped[str | None] = mapped_column(String(255), default=None)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("sample_pk", "idx_a", "idx_b", name="uq_items_pair"),
        CheckConstraint("idx_a < idx_b", name="ck_items_order"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    sample_pk: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    idx_a: Mapped[int] = mapped_column(Integer)
    idx_b: Mapped[int] = mapped_column(Integer)
    # Assignments that are pending or done (skips free the slot): compared with the project's overlap.
    n_active: Mapped[int] = mapped_column(Integer, default=0)

    sample: Mapped[Sample] = relationship()


# The next-item query walks this index in its exact order (open items of a project, fullest first,
# then by id), so it stops at the first item it may give instead of sorting every open item.
Index("ix_items_pick", Item.project_id, Item.n_active.desc(), Item.id)


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id", name="uq_assignments_item_user"),
        CheckConstraint("status IN ('pending', 'done', 'skipped')", name="ck_assignments_status"),
        # An annotator's counts and open item per project, from the index alone.
        Index("ix_assignments_user_project_status", "user_id", "project_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # True: the canonical response b is shown on the left ("Response A" on the page).
    swapped: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    item: Mapped[Item] = relationship()
    user: Mapped[User] = relationship()


class Annotation(Base):
    """A submitted judgement, always in canonical order (a = response idx_a, b = response idx_b)."""

    __tablename__ = "annotations"
    __table_args__ = (
        UniqueConstraint("assignment_id", name="uq_annotations_assignment"),
        UniqueConstraint("user_id", "idempotency_key", name="uq_annotations_idempotency"),
        CheckConstraint("skipped OR label IS NOT NULL", name="ck_annotations_label"),
        CheckConstraint("label IS NULL OR label IN ('a', 'b', 'tie')", name="ck_annotations_label_value"),
        Index("ix_annotations_project_user", "project_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    label: Mapped[str | None] = mapped_column(String(8), default=None)
    strength: Mapped[int | None] = mapped_column(Integer, default=None)  # 1 slightly, 2 much; None: tie
    # The 5-point overall choice in canonical order: 1 = a much better, 3 = tie, 5 = b much better.
    choice: Mapped[int | None] = mapped_column(Integer, default=None)
    scores: Mapped[dict | None] = mapped_column(JSON, default=None)  # {"a": {criterion: 1-5}, "b": {...}}
    rationale: Mapped[str] = mapped_column(Text, default="")
    flags: Mapped[list] = mapped_column(JSON, default=list)  # subset of ["unsafe", "broken"]
    swapped: Mapped[bool] = mapped_column(Boolean, default=False)  # display order, copied from assignment
    time_spent_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    assignment: Mapped[Assignment] = relationship()
    user: Mapped[User] = relationship()
    item: Mapped[Item] = relationship()


class GuidelinesSeen(Base):
    """Which version of a project's guidelines a user has confirmed reading."""

    __tablename__ = "guidelines_seen"
    __table_args__ = (UniqueConstraint("user_id", "project_id", name="uq_guidelines_seen"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # {section key: digest} of the text confirmed (None for confirmations older than migration 0002).
    sections: Mapped[dict | None] = mapped_column(JSON, default=None)
