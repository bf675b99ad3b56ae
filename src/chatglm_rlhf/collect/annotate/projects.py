"""Projects and their data: names, settings, the pairs to compare, and loading candidates into items.

The lower half of the annotation rules (:mod:`~chatglm_rlhf.collect.annotate.service` builds users,
assignment and submission on it and re-exports these names). The errors live here because both halves
raise them. Every function takes an open SQLAlchemy session; the caller owns the transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatglm_rlhf.collect.annotate.models import Item, Project, Sample
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
    s: Session,
    project: Project,
    samples: list[DialogueSample],
    max_chars: int = 50_000,
    where: list[str] | None = None,
) -> LoadReport:
    """Add samples and their pairs (by the project's pair mode); samples already loaded are kept as is.

    ``where`` (one per sample, e.g. ``file:line``) starts each rejection, so it can be found and fixed.
    An id that comes twice in ``samples`` is rejected the second time, naming where it came first.
    """
    report = LoadReport()
    known = set(s.scalars(select(Sample.sample_id).where(Sample.project_id == project.id)))
    first_seen: dict[str, str] = {}
    for n, sample in enumerate(samples):
        at = where[n] if where is not None else f"sample {n + 1}"
        reason = _reject_reason(sample, max_chars)
        if sample.id and sample.id in first_seen:
            reason = f"duplicate id (first at {first_seen[sample.id]})"
        elif sample.id:
            first_seen[sample.id] = at
        if reason:
            report.rejected.append(f"{at}: sample {sample.id or '?'}: {reason}")
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


def read_candidates(
    path: str, source: str | None = None
) -> tuple[list[tuple[int, DialogueSample]], list[str]]:
    """(line, sample) pairs of a candidates JSONL and the read report's lines, every problem as
    ``source:line[:column]: reason``; ``source`` names the file in messages (an upload's own name
    rather than the server's temporary file)."""
    from chatglm_rlhf.data.io import read_records

    refuse_preference_file(path, source or str(path))
    rows, report = read_records(path, lambda obj, line: (line, DialogueSample.from_dict(obj)), with_line=True)
    if source is not None and source != str(path):
        prefix = f"{path}:"
        report.rejected = [
            source + m[len(str(path)) :] if m.startswith(prefix) else m for m in report.rejected
        ]
        report.path = source
    lines = [report.summary()] + [f"  {m}" for m in report.rejected[:50]]
    if len(report.rejected) > 50:
        lines.append(f"  ... and {len(report.rejected) - 50} more")
    return rows, lines


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
) -> tuple[list[str], LoadReport]:
    """Read a candidates JSONL and load it in one transaction; returns (read-report lines, load report).

    ``overlap`` and ``pair_mode`` apply when the project is created; an existing project keeps its own.
    ``source`` is the file's name in messages (default: ``path``).
    """
    label = source if source is not None else str(path)
    rows, lines = read_candidates(path, label)
    with db.write() as s:
        project, created = ensure_project(s, project_name, overlap, pair_mode)
        if not created and (project.overlap, project.pair_mode) != (overlap, pair_mode):
            lines.append(
                f"project {project.name} exists: it keeps overlap {project.overlap} and pairs "
                f"{project.pair_mode!r} (change overlap with `annotate project set`)"
            )
        samples, where = [r for _, r in rows], [f"{label}:{line}" for line, _ in rows]
        report = load_samples(s, project, samples, max_chars=max_chars, where=where)
    return lines, report
