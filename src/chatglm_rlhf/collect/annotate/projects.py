"""Projects and their data: names, settings, the pairs to compare, and loading candidates into items.

The lower half of the annotation rules (:mod:`~chatglm_rlhf.collect.annotate.service` builds users,
assignment and submission on it and re-exports these names). The errors live here because both halves
raise them. Every function takes an open SQLAlchemy session; the caller owns the transaction.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources

from sqlalchemy import exists, insert, select
from sqlalchemy.orm import Session

from chatglm_rlhf.collect.annotate.models import Item, Project, Sample
from chatglm_rlhf.data.io import ReadReport, iter_parsed
from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.errors import UserError

PAIR_MODES = ("all", "adjacent", "first")
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
    rounds: set[int] = field(default_factory=set)  # the feedback rounds of the samples added

    def lines(self) -> list[str]:
        said = f" (round {', '.join(map(str, sorted(self.rounds)))})" if self.rounds - {1} else ""
        out = [
            f"samples added {self.samples_added}{said}, pairs added {self.items_added}, "
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


LOAD_BATCH = 500  # samples per INSERT: ~2.5 MB of text at the paper's shape, one round trip each
Pairs = list[tuple[int, int]]


def sample_round(sample: DialogueSample, round_: int | None) -> tuple[int, str | None]:
    """(the sample's feedback round, a rejection reason or None): its ``meta.round`` (a round's batch
    says it), else ``round_`` (``annotate load --round``), else 1. The two must agree when both are given."""
    given = (sample.meta or {}).get("round")
    if given is None:
        return round_ or 1, None
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        return 0, f"meta round {given!r} is not a round number (1, 2, ...)"
    if round_ is not None and given != round_:
        return 0, f"meta round {given}, but this load is for round {round_} (--round)"
    return given, None


def sample_pairs(sample: DialogueSample, mode: str) -> tuple[Pairs, str | None]:
    """(the pairs to compare, a rejection reason or None): a batch's chosen pairs (``meta.pairs``, the
    pairs a round's selection picked), else every pair the project's pair mode forms."""
    given, k = (sample.meta or {}).get("pairs"), len(sample.responses)
    if given is None:
        return form_pairs(k, mode), None

    def ok(p) -> bool:
        ints = isinstance(p, list | tuple) and len(p) == 2 and all(type(x) is int for x in p)
        return ints and 0 <= p[0] < p[1] < k

    if not isinstance(given, list) or not given or not all(ok(p) for p in given):
        return [], f"meta pairs must be a non-empty list of [i, j] with 0 <= i < j < {k}"
    return sorted({(p[0], p[1]) for p in given}), None


def load_samples(
    s: Session,
    project: Project,
    samples: Iterable[DialogueSample],
    max_chars: int = 50_000,
    where: Iterable[str] | None = None,
    round_: int | None = None,
) -> LoadReport:
    """Add samples and their pairs (by the project's pair mode); samples already loaded are kept as is.

    ``where`` (one per sample, e.g. ``file:line``) starts each rejection, so it can be found and fixed.
    An id that comes twice in ``samples`` (in one round) is rejected the second time, naming where it
    came first. ``samples`` may be a generator: it is read and inserted LOAD_BATCH at a time, never held
    whole. ``round_``: the feedback round (see :func:`sample_round`).
    """
    where = where if where is not None else (f"sample {n + 1}" for n in itertools.count())
    return load_rows(s, project, zip(where, samples), max_chars, round_)


def load_rows(
    s: Session,
    project: Project,
    rows: Iterable[tuple[str, DialogueSample]],
    max_chars: int = 50_000,
    round_: int | None = None,
) -> LoadReport:
    """:func:`load_samples` on (where, sample) pairs."""
    report = LoadReport()
    # Into an empty project nothing can be loaded already (repeats in ``rows`` are caught below), so
    # the database is not asked: during one long load PostgreSQL has no statistics of the rows it
    # just took, answered by scanning every sample of the project, and the load became quadratic.
    had_samples = s.scalar(select(exists().where(Sample.project_id == project.id)))
    first_seen: dict[tuple[int, str], str] = {}  # (round, id) -> where: all that is kept per sample
    batch: list[tuple[DialogueSample, int, Pairs]] = []
    for at, sample in rows:
        rnd, round_reason = sample_round(sample, round_)
        pairs, pairs_reason = sample_pairs(sample, project.pair_mode)
        reason = _reject_reason(sample, max_chars) or round_reason or pairs_reason
        if sample.id and (rnd, sample.id) in first_seen:
            reason = f"duplicate id (first at {first_seen[(rnd, sample.id)]})"
        elif sample.id and not reason:
            first_seen[(rnd, sample.id)] = at
        if reason:
            report.rejected.append(f"{at}: sample {sample.id or '?'}: {reason}")
            continue
        batch.append((sample, rnd, pairs))
        if len(batch) >= LOAD_BATCH:
            _insert_batch(s, project, batch, report, had_samples)
            batch = []
    _insert_batch(s, project, batch, report, had_samples)
    return report


def _insert_batch(
    s: Session,
    project: Project,
    batch: list[tuple[DialogueSample, int, Pairs]],
    report: LoadReport,
    check: bool,
) -> None:
    """Insert new samples with one multi-row INSERT (ids back in order), then their pairs with another.

    With ``check``, which samples the project already has is asked of the database for this batch
    only: a set of every id in a large project is memory that grows with it."""
    if not batch:
        return
    known: set[tuple[int, str]] = set()
    if check:
        in_batch = Sample.sample_id.in_([smp.id for smp, _, _ in batch])
        q = select(Sample.round, Sample.sample_id).where(Sample.project_id == project.id, in_batch)
        known = {(r, i) for r, i in s.execute(q)}
    new = [(smp, rnd, pairs) for smp, rnd, pairs in batch if (rnd, smp.id) not in known]
    report.already_loaded += len(batch) - len(new)
    if not new:
        return
    rows = [
        {
            "project_id": project.id,
            "sample_id": smp.id,
            "round": rnd,
            "prompt": smp.prompt,
            "history": [{"role": t.role, "content": t.content} for t in smp.history],
            "responses": list(smp.responses),
            "category": smp.category,
            "meta": dict(smp.meta),
        }
        for smp, rnd, _ in new
    ]
    pks = s.scalars(insert(Sample).returning(Sample.id, sort_by_parameter_order=True), rows).all()
    items = []
    for pk, (smp, _, pairs) in zip(pks, new):
        for i, j in pairs:
            if smp.responses[i] == smp.responses[j]:
                report.identical_pairs += 1  # nothing to compare: an annotator's time is better spent
                continue
            items.append({"project_id": project.id, "sample_pk": pk, "idx_a": i, "idx_b": j, "n_active": 0})
    if items:
        s.execute(insert(Item), items)
    report.samples_added += len(new)
    report.items_added += len(items)
    report.rounds.update(rnd for _, rnd, _ in new)


def iter_candidates(path: str, report: ReadReport) -> Iterator[tuple[int, DialogueSample]]:
    """(line, sample) of a candidates file, one at a time; what cannot be read goes to ``report``
    (as :func:`~chatglm_rlhf.data.io.read_records` would put it, which holds every record at once)."""
    yield from iter_parsed(path, DialogueSample.from_dict, report)


def read_report_lines(report: ReadReport, path: str, source: str) -> list[str]:
    """The read report's lines, naming ``source`` (an upload's own name) instead of ``path``."""
    if source != str(path):
        prefix = f"{path}:"
        report.rejected = [
            source + m[len(str(path)) :] if m.startswith(prefix) else m for m in report.rejected
        ]
        report.path = source
    lines = [report.summary()] + [f"  {m}" for m in report.rejected[:50]]
    if len(report.rejected) > 50:
        lines.append(f"  ... and {len(report.rejected) - 50} more")
    return lines


PAIR_KEYS = ({"chosen", "rejected"}, {"response_a", "response_b"})  # TRL's and our preference records


def refuse_preference_file(path: str, label: str) -> None:
    """A preference file given where candidates belong: one line saying what the file is and where it
    goes, instead of a rejected-line report for every record."""
    import json

    with open(path, encoding="utf-8", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        obj = json.loads(first)
    except json.JSONDecodeError:
        return  # the reader reports it, line by line
    if isinstance(obj, dict) and "responses" not in obj and any(keys <= obj.keys() for keys in PAIR_KEYS):
        raise UserError(
            f"{label}: a preference file (pairs already compared), not candidates: `annotate load` takes our "
            "samples JSONL with k >= 2 responses per prompt (`chatglm-rlhf generate` writes one); give "
            "preferences to `chatglm-rlhf filter` or the files profile's task.preferences"
        )


def load_file(
    db,
    path: str,
    project_name: str,
    overlap: int,
    pair_mode: str,
    max_chars: int = 50_000,
    source: str | None = None,
    round_: int | None = None,
) -> tuple[list[str], LoadReport]:
    """Read a candidates JSONL and load it in one transaction; returns (read-report lines, load report).

    ``overlap`` and ``pair_mode`` apply when the project is created; an existing project keeps its own.
    ``source`` is the file's name in messages (default: ``path``). The file is streamed: read, checked
    and inserted in batches inside the transaction, so memory does not grow with the file.
    ``round_``: the feedback round of every sample (else each sample's ``meta.round``, else 1); a
    round's batch (``meta.pairs``) brings only its chosen pairs, whatever the pair mode.
    """
    label = source if source is not None else str(path)
    refuse_preference_file(path, label)
    read = ReadReport(str(path))
    with db.write() as s:
        project, created = ensure_project(s, project_name, overlap, pair_mode)
        rows = ((f"{label}:{line}", sample) for line, sample in iter_candidates(path, read))
        report = load_rows(s, project, rows, max_chars, round_)
    lines = read_report_lines(read, path, label)
    if not created and (project.overlap, project.pair_mode) != (overlap, pair_mode):
        lines.append(
            f"project {project.name} exists: it keeps overlap {project.overlap} and pairs "
            f"{project.pair_mode!r} (change overlap with `annotate project set`)"
        )
    return lines, report
