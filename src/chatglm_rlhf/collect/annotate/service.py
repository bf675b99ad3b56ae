"""The app's rules, independent of HTTP: users, sessions, assignment, submission (on top of projects).

Projects, names, loading and the errors are in :mod:`~chatglm_rlhf.collect.annotate.projects` and
re-exported here, so the app, the CLI and the tests keep one entry point (``service.X``).

Every function takes an open SQLAlchemy session; the caller owns the transaction (one request or one
CLI command = one transaction), so a submission is either wholly stored or not at all.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Select, Update, and_, exists, func, select, update
from sqlalchemy.orm import Session, joinedload

from chatglm_rlhf.collect.annotate import security
from chatglm_rlhf.collect.annotate.models import (
    ROLES,
    Annotation,
    Assignment,
    GuidelinesSeen,
    Item,
    Project,
    User,
    WebSession,
    utcnow,
)
from chatglm_rlhf.collect.annotate.projects import (  # noqa: F401 (re-exported: callers use service.X)
    MAX_GUIDELINES_CHARS,
    MAX_OVERLAP,
    NAME_RE,
    PAIR_MODES,
    AnnotateError,
    Conflict,
    Forbidden,
    Invalid,
    LoadReport,
    NotFound,
    check_name,
    check_overlap,
    default_guidelines,
    ensure_project,
    form_pairs,
    get_project,
    list_projects,
    load_file,
    load_samples,
    set_guidelines,
    set_overlap,
)
from chatglm_rlhf.collect.annotate.render import markdown_sections
from chatglm_rlhf.data.schema import CRITERIA
from chatglm_rlhf.errors import UserError  # noqa: F401 (re-exported: callers catch service.UserError)

FLAGS = ("unsafe", "broken")
MAX_RATIONALE_CHARS = 5_000

# A user, or only the id where that is all a caller has (a request knows its user's id from the
# session lookup; loading the row again would be one more round trip to the database).
UserRef = User | int


def _user_id(user: UserRef) -> int:
    return user if isinstance(user, int) else user.id


# --- users, sessions, tokens ----------------------------------------------------------------------


def create_user(s: Session, username: str, password: str, role: str = "annotator") -> User:
    check_name("username", username)
    if role not in ROLES:
        raise Invalid(f"role must be one of {ROLES}, got {role!r}")
    if s.scalars(select(User).where(User.username == username)).first() is not None:
        raise Conflict(f"user {username!r} already exists")
    try:
        hashed = security.hash_password(password)
    except ValueError as e:
        raise Invalid(str(e)) from e
    user = User(username=username, password_hash=hashed, role=role)
    s.add(user)
    s.flush()
    return user


def get_user(s: Session, username: str) -> User:
    user = s.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def set_active(s: Session, user: User, active: bool) -> int:
    """(De)activate an account. Deactivating releases the user's open items to other annotators and
    ends their sessions and token at once; returns how many open items were released."""
    user.active = active
    if active:
        return 0
    pending = list(
        s.scalars(select(Assignment).where(Assignment.user_id == user.id, Assignment.status == "pending"))
    )
    for a in pending:
        s.execute(update(Item).where(Item.id == a.item_id).values(n_active=Item.n_active - 1))
        s.delete(a)
    return len(pending)


def issue_token(s: Session, user: User) -> str:
    """A new API token for ``user`` (the old one stops working); shown once, stored hashed."""
    token = "cra_" + security.new_token()
    user.api_token_hash = security.token_hash(token)
    return token


def user_by_token(s: Session, token: str) -> User | None:
    if not token or len(token) > 200:
        return None
    user = s.scalars(select(User).where(User.api_token_hash == security.token_hash(token))).first()
    return user if user is not None and user.active else None


def authenticate(s: Session, username: str, password: str) -> User | None:
    user = s.scalars(select(User).where(User.username == username)).first()
    if user is None or not user.active:
        security.dummy_verify(password)
        return None
    return user if security.verify_password(password, user.password_hash) else None


def create_session(s: Session, user: User, ttl: timedelta) -> str:
    """Start a login session; returns the cookie value (a fresh random token, so no session fixation)."""
    token = security.new_token()
    now = utcnow()
    s.add(
        WebSession(
            token_hash=security.token_hash(token),
            user_id=user.id,
            csrf_token=security.new_token(),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return token


def session_for(s: Session, token: str | None) -> WebSession | None:
    if not token or len(token) > 200:
        return None
    # Every request runs this: load the user in the same query.
    q = select(WebSession).options(joinedload(WebSession.user))
    ws = s.scalars(q.where(WebSession.token_hash == security.token_hash(token))).first()
    if ws is None or ws.expires_at <= utcnow() or not ws.user.active:
        return None
    return ws


def end_session(s: Session, token: str | None) -> None:
    if token:
        ws = s.scalars(select(WebSession).where(WebSession.token_hash == security.token_hash(token))).first()
        if ws is not None:
            s.delete(ws)


# --- guidelines -----------------------------------------------------------------------------------


def _seen(s: Session, user: UserRef, project: Project) -> GuidelinesSeen | None:
    return s.scalars(
        select(GuidelinesSeen).where(
            GuidelinesSeen.user_id == _user_id(user), GuidelinesSeen.project_id == project.id
        )
    ).first()


def has_seen_guidelines(s: Session, user: UserRef, project: Project) -> bool:
    seen = _seen(s, user, project)
    return seen is not None and seen.version >= project.guidelines_version


def guideline_sections(text: str) -> list[dict]:
    """The guidelines cut at their headings: ``key`` (the heading, numbered if repeated), ``heading``,
    ``source`` and ``digest`` (of the section's text, so that an edit anywhere in it changes it)."""
    out, counts = [], {}
    for heading, source in markdown_sections(text):
        counts[heading] = counts.get(heading, 0) + 1
        key = heading if counts[heading] == 1 else f"{heading} ({counts[heading]})"
        digest = hashlib.sha256(source.strip().encode("utf-8")).hexdigest()[:16]
        out.append({"key": key, "heading": heading, "source": source, "digest": digest})
    return out


def mark_guidelines_seen(s: Session, user: User, project: Project) -> None:
    seen = _seen(s, user, project)
    digests = {sec["key"]: sec["digest"] for sec in guideline_sections(project.guidelines_md)}
    if seen is None:
        s.add(
            GuidelinesSeen(
                user_id=user.id, project_id=project.id, version=project.guidelines_version, sections=digests
            )
        )
    else:
        seen.version, seen.seen_at, seen.sections = project.guidelines_version, utcnow(), digests


@dataclass
class GuidelinesChanges:
    """What changed since the user last confirmed the guidelines (``updated``: a newer version)."""

    updated: bool = False
    changed: set[str] = field(default_factory=set)  # keys of new or edited sections
    removed: list[str] = field(default_factory=list)  # headings of sections no longer there
    known: bool = True  # False: the confirmation predates section digests; which changed is unknown


def guidelines_changes(s: Session, user: User, project: Project, sections: list[dict]) -> GuidelinesChanges:
    seen = _seen(s, user, project)
    if seen is None or seen.version >= project.guidelines_version:
        return GuidelinesChanges()
    if seen.sections is None:
        return GuidelinesChanges(updated=True, known=False)
    keys = {sec["key"] for sec in sections}
    changed = {sec["key"] for sec in sections if seen.sections.get(sec["key"]) != sec["digest"]}
    removed = [k for k in seen.sections if k not in keys and k]
    return GuidelinesChanges(updated=True, changed=changed, removed=removed)


# --- assignment -----------------------------------------------------------------------------------


def pending_assignment(
    s: Session, user: UserRef, project: Project, with_item: bool = False
) -> Assignment | None:
    """The user's open item in the project, if any (read-only, so it can run beside writers);
    ``with_item`` loads its pair and sample in the same query (the item page shows them)."""
    q = (
        select(Assignment)
        .where(
            Assignment.user_id == _user_id(user),
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
    mine = select(Assignment.id).where(Assignment.item_id == Item.id, Assignment.user_id == _user_id(user))
    return (
        select(Item)
        .where(Item.project_id == project.id, Item.n_active < project.overlap, ~exists(mine))
        .order_by(Item.n_active.desc(), Item.id)
        .limit(1)
    )


def take_statement(user: UserRef, project: Project, lock: str | None = None) -> Update:
    """``UPDATE items SET n_active = n_active + 1 WHERE id = (the pick query) RETURNING id``, only
    while the user has no open item in the project (next_assignment's first look, repeated in the
    same statement as the take). ``lock`` (PostgreSQL): "skip_locked" or "wait"; see _take_item."""
    open_item = exists().where(
        Assignment.user_id == _user_id(user),
        Assignment.project_id == project.id,
        Assignment.status == "pending",
    )
    pick = pick_query(user, project).with_only_columns(Item.id)
    if lock is not None:
        pick = pick.with_for_update(skip_locked=lock == "skip_locked", key_share=True, of=Item)
    # The pick reads its own ``items``: never correlated to the table being updated.
    pick = pick.correlate_except(Item).scalar_subquery()
    return (
        update(Item)
        .where(Item.id == pick, ~open_item)
        .values(n_active=Item.n_active + 1)
        .returning(Item.id)
        .execution_options(synchronize_session="fetch")
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
    if s.get_bind().dialect.name != "postgresql":
        return s.scalar(take_statement(user, project))
    item_id = s.scalar(take_statement(user, project, "skip_locked"))
    return item_id if item_id is not None else s.scalar(take_statement(user, project, "wait"))


def _assign(s: Session, user: UserRef, project: Project) -> Assignment | None:
    """A newly assigned item (see :func:`_take_item`); None when nothing is left for this user."""
    item_id = _take_item(s, user, project)
    if item_id is None:
        return None
    assignment = Assignment(
        item_id=item_id,
        user_id=_user_id(user),
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
    return _assign(s, user, project)


def _own(assignment: Assignment | None, user: UserRef, assignment_id: int) -> Assignment:
    if assignment is None:
        raise NotFound(f"no item {assignment_id}")
    if assignment.user_id != _user_id(user):
        raise Forbidden("this item is assigned to another annotator")
    return assignment


def get_assignment(s: Session, user: UserRef, assignment_id: int) -> Assignment:
    """The assignment if it is the user's own; 404 if missing, 403 if someone else's."""
    return _own(s.get(Assignment, assignment_id), user, assignment_id)


def _lock_assignment(
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
    replay = and_(Annotation.user_id == _user_id(user), Annotation.idempotency_key == key)
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


# --- submission -----------------------------------------------------------------------------------


@dataclass
class Submission:
    """What the annotator chose, in *display* terms: left is "Response A" on the page."""

    idempotency_key: str
    skip: bool = False
    overall: int | None = None  # 1 = left much better, 2 = left slightly, 3 = tie, 4/5 = right
    scores_left: dict[str, int] = field(default_factory=dict)
    scores_right: dict[str, int] = field(default_factory=dict)
    rationale: str = ""
    flags: list[str] = field(default_factory=list)


def validate(sub: Submission) -> None:
    key = sub.idempotency_key or ""
    if not 8 <= len(key) <= 64 or not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        raise Invalid("idempotency key must be 8-64 characters of letters, digits, '_' or '-'")
    if len(sub.rationale) > MAX_RATIONALE_CHARS:
        raise Invalid(f"rationale is limited to {MAX_RATIONALE_CHARS} characters")
    bad = [f for f in sub.flags if f not in FLAGS]
    if bad:
        raise Invalid(f"unknown flags {bad}; allowed: {FLAGS}")
    if sub.skip:
        return
    if sub.overall not in (1, 2, 3, 4, 5):
        raise Invalid("choose the overall preference (1-5)")
    for side, scores in (("left", sub.scores_left), ("right", sub.scores_right)):
        for c in CRITERIA:
            if scores.get(c) not in (1, 2, 3, 4, 5):
                raise Invalid(f"score {c} of the {side} response must be 1-5")
        extra = set(scores) - set(CRITERIA)
        if extra:
            raise Invalid(f"unknown criteria {sorted(extra)}; allowed: {CRITERIA}")


def canonical(sub: Submission, swapped: bool) -> dict:
    """Labels in canonical order (a = the pair's lower response index) from display-order input."""
    if sub.skip:
        return {"label": None, "strength": None, "choice": None, "scores": None}
    choice = 6 - sub.overall if swapped else sub.overall
    label = "a" if choice < 3 else "b" if choice > 3 else "tie"
    strength = {1: 2, 2: 1, 3: None, 4: 1, 5: 2}[choice]
    left, right = dict(sub.scores_left), dict(sub.scores_right)
    a, b = (right, left) if swapped else (left, right)
    return {"label": label, "strength": strength, "choice": choice, "scores": {"a": a, "b": b}}


def _replay(s: Session, user: UserRef, key: str) -> Annotation | None:
    return s.scalars(
        select(Annotation).where(Annotation.user_id == _user_id(user), Annotation.idempotency_key == key)
    ).first()


def submit(s: Session, user: UserRef, assignment_id: int, sub: Submission) -> tuple[Annotation, bool]:
    """Store a judgement (or a skip); returns (annotation, created). A replayed key returns the original.

    A new judgement is five statements (round trips, on PostgreSQL) between BEGIN and COMMIT: the
    locked assignment with its project and any earlier use of the key; the assignment's status and
    the annotation (one flush); the next item taken; its assignment.
    """
    validate(sub)
    assignment, project, previous = _lock_assignment(s, user, assignment_id, sub.idempotency_key)
    if previous is None and assignment.status != "pending":  # perhaps a duplicate's, committed since
        previous = _replay(s, user, sub.idempotency_key)
    if previous is not None:
        if previous.assignment_id != assignment.id:
            raise Conflict("this idempotency key was already used for another item")
        return previous, False
    if assignment.status != "pending":
        raise Conflict("this item was already submitted")
    now = utcnow()
    labels = canonical(sub, assignment.swapped)
    ann = Annotation(
        assignment_id=assignment.id,
        item_id=assignment.item_id,
        user_id=assignment.user_id,
        project_id=assignment.project_id,
        idempotency_key=sub.idempotency_key,
        skipped=sub.skip,
        rationale=sub.rationale,
        flags=sorted(set(sub.flags)),
        swapped=assignment.swapped,
        time_spent_ms=max(0, int((now - assignment.assigned_at).total_seconds() * 1000)),
        created_at=now,
        **labels,
    )
    s.add(ann)
    assignment.status = "skipped" if sub.skip else "done"
    if sub.skip:  # a skip frees the slot so that another annotator gets the pair
        s.execute(update(Item).where(Item.id == assignment.item_id).values(n_active=Item.n_active - 1))
    s.flush()
    # Assign the next item in the same transaction: the page that follows only has to read it, and
    # a commit (an fsync) is saved per item. (Not while the user has another open item: the take
    # checks that in the same statement, as next_assignment would first.)
    _assign(s, user, project)
    return ann, True


def find_by_key(s: Session, user: UserRef, key: str) -> Annotation | None:
    return _replay(s, user, key)


def user_counts(s: Session, user: UserRef, project: Project) -> dict[str, int]:
    rows = s.execute(
        select(Assignment.status, func.count())
        .where(Assignment.user_id == _user_id(user), Assignment.project_id == project.id)
        .group_by(Assignment.status)
    ).all()
    counts = {"pending": 0, "done": 0, "skipped": 0}
    counts.update({status: n for status, n in rows})
    return counts
