"""The app's rules, independent of HTTP: users, sessions, assignment, submission (on top of projects).

Projects, names, loading and the errors are in :mod:`~chatglm_rlhf.collect.annotate.projects`, which
item is assigned next in :mod:`~chatglm_rlhf.collect.annotate.assign`; both are re-exported here, so
the app, the CLI and the tests keep one entry point (``service.X``).

Every function takes an open SQLAlchemy session; the caller owns the transaction (one request or one
CLI command = one transaction), so a submission is either wholly stored or not at all.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload

from chatglm_rlhf.collect.annotate import security
from chatglm_rlhf.collect.annotate.assign import (  # noqa: F401 (re-exported: callers use service.X)
    UserRef,
    close_and_assign,
    get_assignment,
    lock_assignment,
    next_assignment,
    pending_assignment,
    pick_query,
    take_statement,
    user_id_of,
)
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
            GuidelinesSeen.user_id == user_id_of(user), GuidelinesSeen.project_id == project.id
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
        select(Annotation).where(Annotation.user_id == user_id_of(user), Annotation.idempotency_key == key)
    ).first()


def submit(s: Session, user: UserRef, assignment_id: int, sub: Submission) -> tuple[Annotation, bool]:
    """Store a judgement (or a skip); returns (annotation, created). A replayed key returns the original.

    On PostgreSQL a new judgement is three statements (round trips) between BEGIN and COMMIT: the
    locked assignment with its project and any earlier use of the key; the annotation; the
    assignment's status with the next item taken and assigned (:func:`close_and_assign`).
    """
    validate(sub)
    assignment, project, previous = lock_assignment(s, user, assignment_id, sub.idempotency_key)
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
    if sub.skip:  # a skip frees the slot so that another annotator gets the pair
        s.execute(update(Item).where(Item.id == assignment.item_id).values(n_active=Item.n_active - 1))
    s.flush()
    # Close the assignment and assign the next item in the same transaction: the page that follows
    # only has to read it, and a commit (an fsync) is saved per item. (Not while the user has another
    # open item: the take checks that in the same statement, as next_assignment would first.)
    close_and_assign(s, assignment, "skipped" if sub.skip else "done", project)
    return ann, True


def find_by_key(s: Session, user: UserRef, key: str) -> Annotation | None:
    return _replay(s, user, key)


def user_counts(s: Session, user: UserRef, project: Project) -> dict[str, int]:
    rows = s.execute(
        select(Assignment.status, func.count())
        .where(Assignment.user_id == user_id_of(user), Assignment.project_id == project.id)
        .group_by(Assignment.status)
    ).all()
    counts = {"pending": 0, "done": 0, "skipped": 0}
    counts.update({status: n for status, n in rows})
    return counts
