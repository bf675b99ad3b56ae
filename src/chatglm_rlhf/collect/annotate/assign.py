"""Which item an annotator gets next, and the locked read that a submission starts with.

Re-exported by :mod:`~chatglm_rlhf.collect.annotate.service` (callers use ``service.X``). Every
function takes an open session; the caller owns the transaction.

On PostgreSQL every statement is a round trip, and on a busy machine each costs milliseconds of
scheduling, so the hot paths are few statements: taking an item is one (:func:`take_statement`), and
after a judgement, closing its assignment, taking the next item and assigning it is one more
(:func:`close_and_assign`).
"""

from __future__ import annotations

import secrets

from sqlalchemy import Select, Update, and_, exists, insert, literal, select, update
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from chatglm_rlhf.collect.annotate.models import (
    Annotation,
    Assignment,
    Item,
    Project,
    User,
    UTCDateTime,
    utcnow,
)
from chatglm_rlhf.collect.annotate.projects import Forbidden, NotFound

# A user, or only the id where that is all a caller has (a request knows its user's id from the
# session lookup; loading the row again would be one more round trip to the database).
UserRef = User | int


def user_id_of(user: UserRef) -> int:
    return user if isinstance(user, int) else user.id


def pending_assignment(
    s: Session, user: UserRef, project: Project, with_item: bool = False
) -> Assignment | None:
    """The user's open item in the project, if any (read-only, so it can run beside writers);
    ``with_item`` loads its pair and sample in the same query (the item page shows them)."""
    q = (
        select(Assignment)
        .where(
            Assignment.user_id == user_id_of(user),
            Assignment.project_id == project.id,
            Assignment.status == "pending",
        )
        .order_by(Assignment.id)
        .limit(1)
    )
    if with_item:
        q = q.options(joinedload(Assignment.item).joinedload(Item.sample))
    return s.scalars(q).first()


def pick_query(user: UserRef, project: Project) -> Select:
    """Open items the user has not had, fullest first, then by id: the order of index ix_items_pick,
    so the database reads from its start and stops at the first row that qualifies (no sort)."""
    mine = select(Assignment.id).where(Assignment.item_id == Item.id, Assignment.user_id == user_id_of(user))
    return (
        select(Item)
        .where(Item.project_id == project.id, Item.n_active < project.overlap, ~exists(mine))
        .order_by(Item.n_active.desc(), Item.id)
        .limit(1)
    )


def take_statement(
    user: UserRef, project: Project, lock: str | None = None, closing: int | None = None
) -> Update:
    """``UPDATE items SET n_active = n_active + 1 WHERE id = (the pick query) RETURNING id``, only
    while the user has no open item in the project (next_assignment's first look, repeated in the
    same statement as the take) other than assignment ``closing`` (being closed in the same
    statement, see close_and_assign). ``lock`` (PostgreSQL): "skip_locked" or "wait"; see _take_item.
    """
    open_item = exists().where(
        Assignment.user_id == user_id_of(user),
        Assignment.project_id == project.id,
        Assignment.status == "pending",
    )
    if closing is not None:
        open_item = open_item.where(Assignment.id != closing)
    pick = pick_query(user, project).with_only_columns(Item.id)
    if lock is not None:
        pick = pick.with_for_update(skip_locked=lock == "skip_locked", key_share=True, of=Item)
    # The pick reads its own ``items``: never correlated to the table being updated.
    pick = pick.correlate_except(Item).scalar_subquery()
    return (
        update(Item).where(Item.id == pick, ~open_item).values(n_active=Item.n_active + 1).returning(Item.id)
    )


def _take_item(s: Session, user: UserRef, project: Project) -> int | None:
    """Take the next open item (one statement, :func:`take_statement`); returns its id, or None.

    SQLite transactions that write are already serialised (BEGIN IMMEDIATE). On PostgreSQL the pick
    locks its row (FOR NO KEY UPDATE: the lock an UPDATE of a non-key column takes, which does not
    conflict with the key-share locks that foreign keys to the item take), and PostgreSQL re-checks
    ``n_active < overlap`` once it holds the lock, so two annotators can never both take an item's
    last slot. SKIP LOCKED lets concurrent annotators take different items instead of queueing; if
    that finds nothing (all candidates briefly locked, or a re-check failed under LIMIT 1), one
    blocking attempt gives the exact answer.
    """
    fetch = {"synchronize_session": "fetch"}  # a loaded Item sees its new n_active
    if s.get_bind().dialect.name != "postgresql":
        return s.scalar(take_statement(user, project), execution_options=fetch)
    item_id = s.scalar(take_statement(user, project, "skip_locked"), execution_options=fetch)
    if item_id is None:
        item_id = s.scalar(take_statement(user, project, "wait"), execution_options=fetch)
    return item_id


def assign(s: Session, user: UserRef, project: Project) -> Assignment | None:
    """A newly assigned item (see :func:`_take_item`); None when nothing is left for this user."""
    item_id = _take_item(s, user, project)
    if item_id is None:
        return None
    assignment = Assignment(
        item_id=item_id,
        user_id=user_id_of(user),
        project_id=project.id,
        swapped=secrets.randbelow(2) == 1,  # display order randomised per annotator, recorded
        status="pending",
    )
    s.add(assignment)
    s.flush()
    return assignment


def next_assignment(s: Session, user: UserRef, project: Project) -> Assignment | None:
    """The user's open item, or a newly assigned one; None when nothing is left for this user.

    Items nearest to their overlap go first (so pairs get complete judgements early), then by id, so
    that one annotator tends to get all pairs of a sample and intransitive cycles can be measured.
    """
    pending = pending_assignment(s, user, project)
    if pending is not None:
        return pending
    return assign(s, user, project)


def close_and_assign(s: Session, assignment: Assignment, status: str, project: Project) -> int | None:
    """Set the judged ``assignment``'s status and assign the user's next item: on PostgreSQL one
    statement, ``WITH closed AS (UPDATE assignments ...), taken AS (take_statement) INSERT INTO
    assignments ... SELECT ... FROM taken``, where SQLite runs the status update (a flush), the take
    and the insert. Returns the new assignment's id (None: nothing left for the user).

    The take sees the statement's snapshot, where the assignment being closed is still open: its
    guard leaves that one out. Nothing else differs from :func:`assign` after a flush of the status.
    """
    if s.get_bind().dialect.name != "postgresql":
        assignment.status = status
        s.flush()
        new = assign(s, assignment.user_id, project)
        return None if new is None else new.id

    def take_and_insert(lock: str, closing: Assignment | None) -> int | None:
        taken = take_statement(assignment.user_id, project, lock, closing and closing.id).cte("taken")
        row = select(
            taken.c.id,
            literal(assignment.user_id),
            literal(project.id),
            literal(secrets.randbelow(2) == 1),  # display order randomised per annotator, recorded
            literal("pending"),
            literal(utcnow(), UTCDateTime()),
        )
        columns = ["item_id", "user_id", "project_id", "swapped", "status", "assigned_at"]
        stmt = insert(Assignment).from_select(columns, row).add_cte(taken)
        if closing is not None:
            closed = update(Assignment).where(Assignment.id == closing.id).values(status=status)
            stmt = stmt.add_cte(closed.returning(Assignment.id).cte("closed"))
        return s.scalar(stmt.returning(Assignment.id))

    new_id = take_and_insert("skip_locked", assignment)
    set_committed_value(assignment, "status", status)  # as stored (the statement bypassed the ORM)
    return new_id if new_id is not None else take_and_insert("wait", None)


def _own(assignment: Assignment | None, user: UserRef, assignment_id: int) -> Assignment:
    if assignment is None:
        raise NotFound(f"no item {assignment_id}")
    if assignment.user_id != user_id_of(user):
        raise Forbidden("this item is assigned to another annotator")
    return assignment


def get_assignment(s: Session, user: UserRef, assignment_id: int) -> Assignment:
    """The assignment if it is the user's own; 404 if missing, 403 if someone else's."""
    return _own(s.get(Assignment, assignment_id), user, assignment_id)


def lock_assignment(
    s: Session, user: UserRef, assignment_id: int, key: str
) -> tuple[Assignment, Project, Annotation | None]:
    """:func:`get_assignment`, locked (a concurrent post of the same form waits here until the other
    commits, then gets the row as that left it), with its project and the user's annotation under
    idempotency key ``key`` (if any) in the same query.

    The annotation comes from the statement's snapshot, taken before any wait for the lock: one
    that a concurrent duplicate committed meanwhile is not in it. That duplicate also marked the
    assignment done, which the locked row does show; so ``submit`` looks the key up again, in a new
    statement, whenever the assignment is no longer pending.
    """
    replay = and_(Annotation.user_id == user_id_of(user), Annotation.idempotency_key == key)
    row = s.execute(
        select(Assignment, Project, Annotation)
        .join(Project, Project.id == Assignment.project_id)
        .outerjoin(Annotation, replay)
        .where(Assignment.id == assignment_id)
        .with_for_update(of=Assignment)
    ).first()
    if row is None:
        raise NotFound(f"no item {assignment_id}")
    return _own(row[0], user, assignment_id), row[1], row[2]
