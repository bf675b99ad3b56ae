"""The app's rules, independent of HTTP: projects, loading, users, sessions, assignment, submission.

Every function takes an open SQLAlchemy session; the caller owns the transaction (one request or one
CLI command = one transaction), so a submission is either wholly stored or not at all.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, joinedload

from chatglm_rlhf.collect.annotate import security
from chatglm_rlhf.collect.annotate.models import (
    ROLES,
    Annotation,
    Assignment,
    GuidelinesSeen,
    Item,
    Project,
    Sample,
    User,
    WebSession,
    utcnow,
)
from chatglm_rlhf.data.schema import CRITERIA, DialogueSample
from chatglm_rlhf.errors import UserError

PAIR_MODES = ("all", "adjacent", "first")
FLAGS = ("unsafe", "broken")
MAX_RATIONALE_CHARS = 5_000
MAX_GUIDELINES_CHARS = 100_000
MAX_OVERLAP = 100
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class AnnotateError(UserError):
    """A refused operation; ``status`` is the HTTP status the web layer answers with."""

    status = 400


class NotFound(AnnotateError):
    status = 404


class Forbidden(AnnotateError):
    status = 403


class Conflict(AnnotateError):
    status = 409


class Invalid(AnnotateError):
    status = 422


def default_guidelines() -> str:
    return resources.files(__package__).joinpath("guidelines_default.md").read_text(encoding="utf-8")


def check_name(kind: str, name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise Invalid(
            f"{kind} {name!r}: use 1-64 letters, digits, '_', '.', '-', starting with a letter/digit"
        )
    return name


# --- projects and loading -------------------------------------------------------------------------


def get_project(s: Session, name: str) -> Project:
    project = s.scalars(select(Project).where(Project.name == name)).first()
    if project is None:
        raise NotFound(f"no project named {name!r}")
    return project


def list_projects(s: Session) -> list[Project]:
    return list(s.scalars(select(Project).order_by(Project.name)))


def ensure_project(s: Session, name: str, overlap: int, pair_mode: str) -> tuple[Project, bool]:
    """The named project, created (with the default guidelines) if missing; (project, created)."""
    check_name("project", name)
    check_overlap(overlap)
    if pair_mode not in PAIR_MODES:
        raise Invalid(f"pairs must be one of {PAIR_MODES}, got {pair_mode!r}")
    project = s.scalars(select(Project).where(Project.name == name)).first()
    if project is not None:
        return project, False
    project = Project(name=name, overlap=overlap, pair_mode=pair_mode, guidelines_md=default_guidelines())
    s.add(project)
    s.flush()
    return project, True


def check_overlap(overlap: int) -> int:
    if not 1 <= overlap <= MAX_OVERLAP:
        raise Invalid(f"overlap must be between 1 and {MAX_OVERLAP}, got {overlap}")
    return overlap


def set_overlap(s: Session, project: Project, overlap: int) -> None:
    project.overlap = check_overlap(overlap)


def set_guidelines(s: Session, project: Project, text: str) -> None:
    if len(text) > MAX_GUIDELINES_CHARS:
        raise Invalid(f"guidelines are limited to {MAX_GUIDELINES_CHARS} characters, got {len(text)}")
    if text != project.guidelines_md:
        project.guidelines_md = text
        project.guidelines_version += 1


def form_pairs(k: int, mode: str) -> list[tuple[int, int]]:
    """Index pairs (i < j) to compare among k responses. ``all`` lets cycles (a>b>c>a) show up later."""
    if mode == "all":
        return [(i, j) for i in range(k) for j in range(i + 1, k)]
    if mode == "adjacent":
        return [(i, i + 1) for i in range(k - 1)]
    if mode == "first":
        return [(0, 1)] if k >= 2 else []
    raise Invalid(f"pairs must be one of {PAIR_MODES}, got {mode!r}")


@dataclass
class LoadReport:
    samples_added: int = 0
    items_added: int = 0
    already_loaded: int = 0
    rejected: list[str] = field(default_factory=list)  # "sample <id>: reason"
    identical_pairs: int = 0

    def lines(self) -> list[str]:
        out = [
            f"samples added {self.samples_added}, pairs added {self.items_added}, "
            f"already loaded {self.already_loaded}, rejected {len(self.rejected)}, "
            f"identical pairs left out {self.identical_pairs}"
        ]
        out += [f"  {r}" for r in self.rejected[:50]]
        if len(self.rejected) > 50:
            out.append(f"  ... and {len(self.rejected) - 50} more")
        return out


def _reject_reason(sample: DialogueSample, max_chars: int) -> str | None:
    if not sample.id:
        return "no 'id' (ids must be stable across stages)"
    if len(sample.id) > 255:
        return "id longer than 255 characters"
    if len(sample.responses) < 2:
        return f"needs at least 2 responses to compare, has {len(sample.responses)}"
    texts = [sample.prompt, *sample.responses, *(t.content for t in sample.history)]
    longest = max(len(t) for t in texts)
    if longest > max_chars:
        return f"a text has {longest} characters, above the limit of {max_chars} (--max-chars)"
    return None


def load_samples(
    s: Session, project: Project, samples: list[DialogueSample], max_chars: int = 50_000
) -> LoadReport:
    """Add samples and their pairs (by the project's pair mode); samples already loaded are kept as is."""
    report = LoadReport()
    known = set(s.scalars(select(Sample.sample_id).where(Sample.project_id == project.id)))
    for sample in samples:
        reason = _reject_reason(sample, max_chars)
        if reason:
            report.rejected.append(f"sample {sample.id or '?'}: {reason}")
            continue
        if sample.id in known:
            report.already_loaded += 1
            continue
        known.add(sample.id)
        row = Sample(
            project_id=project.id,
            sample_id=sample.id,
            prompt=sample.prompt,
            history=[{"role": t.role, "content": t.content} for t in sample.history],
            responses=list(sample.responses),
            category=sample.category,
            meta=dict(sample.meta),
        )
        s.add(row)
        s.flush()
        report.samples_added += 1
        for i, j in form_pairs(len(sample.responses), project.pair_mode):
            if sample.responses[i] == sample.responses[j]:
                report.identical_pairs += 1  # nothing to compare: an annotator's time is better spent
                continue
            s.add(Item(project_id=project.id, sample_pk=row.id, idx_a=i, idx_b=j))
            report.items_added += 1
    s.flush()
    return report


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


def has_seen_guidelines(s: Session, user: User, project: Project) -> bool:
    seen = s.scalars(
        select(GuidelinesSeen).where(
            GuidelinesSeen.user_id == user.id, GuidelinesSeen.project_id == project.id
        )
    ).first()
    return seen is not None and seen.version >= project.guidelines_version


def mark_guidelines_seen(s: Session, user: User, project: Project) -> None:
    seen = s.scalars(
        select(GuidelinesSeen).where(
            GuidelinesSeen.user_id == user.id, GuidelinesSeen.project_id == project.id
        )
    ).first()
    if seen is None:
        s.add(GuidelinesSeen(user_id=user.id, project_id=project.id, version=project.guidelines_version))
    else:
        seen.version, seen.seen_at = project.guidelines_version, utcnow()


# --- assignment -----------------------------------------------------------------------------------


def pending_assignment(s: Session, user: User, project: Project) -> Assignment | None:
    """The user's open item in the project, if any (read-only, so it can run beside writers)."""
    return s.scalars(
        select(Assignment)
        .where(
            Assignment.user_id == user.id,
            Assignment.project_id == project.id,
            Assignment.status == "pending",
        )
        .order_by(Assignment.id)
        .limit(1)
    ).first()


def _pick_item(s: Session, user: User, project: Project) -> Item | None:
    """The open item to assign next, locked against a concurrent taker on PostgreSQL.

    SQLite transactions that write are already serialised (BEGIN IMMEDIATE). On PostgreSQL the row is
    locked FOR UPDATE, and PostgreSQL re-checks ``n_active < overlap`` once it holds the lock, so two
    annotators can never both take an item's last slot. SKIP LOCKED lets concurrent annotators take
    different items instead of queueing; if that finds nothing (all candidates briefly locked, or a
    re-check failed under LIMIT 1), one blocking attempt gives the exact answer.
    """
    mine = select(Assignment.id).where(Assignment.item_id == Item.id, Assignment.user_id == user.id)
    query = (
        select(Item)
        .where(Item.project_id == project.id, Item.n_active < project.overlap, ~exists(mine))
        .order_by(Item.n_active.desc(), Item.id)
        .limit(1)
    )
    if s.get_bind().dialect.name != "postgresql":
        return s.scalars(query).first()
    item = s.scalars(query.with_for_update(skip_locked=True, of=Item)).first()
    return item or s.scalars(query.with_for_update(of=Item)).first()


def next_assignment(s: Session, user: User, project: Project) -> Assignment | None:
    """The user's open item, or a newly assigned one; None when nothing is left for this user.

    Items nearest to their overlap go first (so pairs get complete judgements early), then by id, so
    that one annotator tends to get all pairs of a sample and intransitive cycles can be measured.
    """
    pending = pending_assignment(s, user, project)
    if pending is not None:
        return pending
    item = _pick_item(s, user, project)
    if item is None:
        return None
    s.execute(update(Item).where(Item.id == item.id).values(n_active=Item.n_active + 1))
    assignment = Assignment(
        item_id=item.id,
        user_id=user.id,
        project_id=project.id,
        swapped=secrets.randbelow(2) == 1,  # display order randomised per annotator, recorded
        status="pending",
    )
    s.add(assignment)
    s.flush()
    return assignment


def get_assignment(s: Session, user: User, assignment_id: int, lock: bool = False) -> Assignment:
    """The assignment if it is the user's own; 404 if missing, 403 if someone else's."""
    q = select(Assignment).where(Assignment.id == assignment_id)
    assignment = s.scalars(q.with_for_update() if lock else q).first()
    if assignment is None:
        raise NotFound(f"no item {assignment_id}")
    if assignment.user_id != user.id:
        raise Forbidden("this item is assigned to another annotator")
    return assignment


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


def _replay(s: Session, user: User, key: str) -> Annotation | None:
    return s.scalars(
        select(Annotation).where(Annotation.user_id == user.id, Annotation.idempotency_key == key)
    ).first()


def submit(s: Session, user: User, assignment_id: int, sub: Submission) -> tuple[Annotation, bool]:
    """Store a judgement (or a skip); returns (annotation, created). A replayed key returns the original."""
    validate(sub)
    assignment = get_assignment(s, user, assignment_id, lock=True)
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
        user_id=user.id,
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
    # a commit (an fsync) is saved per item.
    next_assignment(s, user, s.get(Project, assignment.project_id))
    return ann, True


def find_by_key(s: Session, user: User, key: str) -> Annotation | None:
    return _replay(s, user, key)


def user_counts(s: Session, user: User, project: Project) -> dict[str, int]:
    rows = s.execute(
        select(Assignment.status, func.count())
        .where(Assignment.user_id == user.id, Assignment.project_id == project.id)
        .group_by(Assignment.status)
    ).all()
    counts = {"pending": 0, "done": 0, "skipped": 0}
    counts.update({status: n for status, n in rows})
    return counts


def load_file(
    db, path: str, project_name: str, overlap: int, pair_mode: str, max_chars: int = 50_000
) -> tuple[list[str], LoadReport]:
    """Read a candidates JSONL and load it in one transaction; returns (read-report lines, load report).

    ``overlap`` and ``pair_mode`` apply when the project is created; an existing project keeps its own.
    """
    from chatglm_rlhf.data.io import read_samples

    try:
        samples, read_report = read_samples(path)
    except UnicodeDecodeError as e:
        raise Invalid(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    lines = [read_report.summary()] + [f"  {m}" for m in read_report.rejected[:50]]
    with db.write() as s:
        project, created = ensure_project(s, project_name, overlap, pair_mode)
        if not created and (project.overlap, project.pair_mode) != (overlap, pair_mode):
            lines.append(
                f"project {project.name} exists: it keeps overlap {project.overlap} and pairs "
                f"{project.pair_mode!r} (change overlap with `annotate project set`)"
            )
        report = load_samples(s, project, samples, max_chars=max_chars)
    return lines, report
