"""Progress, per-annotator counts and speed, and agreement for one project (CLI ``stats`` and /admin)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatglm_rlhf.collect.annotate.agreement import (
    count_cycles,
    krippendorff_alpha,
    majority_agreement,
    mean_pairwise_kappa,
)
from chatglm_rlhf.collect.annotate.models import Annotation, Assignment, Item, Project, Sample, User


@dataclass
class AnnotatorStats:
    username: str
    done: int = 0
    skipped: int = 0
    flagged: int = 0
    pending: int = 0
    median_seconds: float | None = None
    majority_agree: int = 0  # labels equal to the other annotators' majority
    majority_n: int = 0  # items where such a majority existed

    @property
    def majority_rate(self) -> float | None:
        return self.majority_agree / self.majority_n if self.majority_n else None


@dataclass
class ProjectStats:
    project: str
    overlap: int
    samples: int = 0
    items: int = 0
    done: int = 0
    skipped: int = 0
    flagged: int = 0
    complete_items: int = 0  # items with at least `overlap` judgements
    alpha_label: float | None = None  # Krippendorff, nominal, on a / b / tie
    alpha_choice: float | None = None  # Krippendorff, ordinal, on the 5-point overall choice
    kappa_mean: float | None = None  # mean pairwise Cohen's kappa on a / b / tie
    kappa_pairs: int = 0
    triangles_checked: int = 0
    cycles: int = 0
    annotators: list[AnnotatorStats] = field(default_factory=list)

    @property
    def target(self) -> int:
        return self.items * self.overlap

    @property
    def progress(self) -> float:
        return min(1.0, self.done / self.target) if self.target else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(target=self.target, progress=self.progress)
        for a, obj in zip(d["annotators"], self.annotators):
            a["majority_rate"] = obj.majority_rate
        return d


def _rows(s: Session, project: Project) -> list:
    return s.execute(
        select(
            User.username,
            Annotation.item_id,
            Annotation.skipped,
            Annotation.label,
            Annotation.choice,
            Annotation.flags,
            Annotation.time_spent_ms,
            Item.sample_pk,
            Item.idx_a,
            Item.idx_b,
        )
        .join(User, User.id == Annotation.user_id)
        .join(Item, Item.id == Annotation.item_id)
        .where(Annotation.project_id == project.id)
    ).all()


def _agreement(st: ProjectStats, rows: list, per_user: dict[str, AnnotatorStats]) -> None:
    labels: dict[int, dict[str, str]] = defaultdict(dict)
    choices: dict[int, list[int]] = defaultdict(list)
    prefs: dict[tuple[str, int], dict[tuple[int, int], str]] = defaultdict(dict)
    for r in rows:
        if r.skipped:
            continue
        labels[r.item_id][r.username] = r.label
        choices[r.item_id].append(r.choice)
        prefs[(r.username, r.sample_pk)][(r.idx_a, r.idx_b)] = r.label
    st.alpha_label = krippendorff_alpha(labels_list(labels), "nominal")
    st.alpha_choice = krippendorff_alpha(list(choices.values()), "ordinal")
    st.kappa_mean, st.kappa_pairs = mean_pairwise_kappa(labels)
    for user, (agree, n) in majority_agreement(labels).items():
        per_user[user].majority_agree, per_user[user].majority_n = agree, n
    for p in prefs.values():
        checked, cyclic = count_cycles(p)
        st.triangles_checked += checked
        st.cycles += cyclic


def labels_list(labels: dict[int, dict[str, str]]) -> list[list[str]]:
    return [list(v.values()) for v in labels.values()]


def project_stats(s: Session, project: Project) -> ProjectStats:
    st = ProjectStats(project=project.name, overlap=project.overlap)
    st.samples = s.scalar(select(func.count()).select_from(Sample).where(Sample.project_id == project.id))
    st.items = s.scalar(select(func.count()).select_from(Item).where(Item.project_id == project.id))
    rows = _rows(s, project)
    per_user: dict[str, AnnotatorStats] = {}
    times: dict[str, list[float]] = defaultdict(list)
    done_per_item: dict[int, int] = defaultdict(int)
    for r in rows:
        a = per_user.setdefault(r.username, AnnotatorStats(r.username))
        a.flagged += int(bool(r.flags))
        st.flagged += int(bool(r.flags))
        if r.skipped:
            a.skipped += 1
            st.skipped += 1
            continue
        a.done += 1
        st.done += 1
        done_per_item[r.item_id] += 1
        if r.time_spent_ms is not None:
            times[r.username].append(r.time_spent_ms / 1000.0)
    for name, n in s.execute(
        select(User.username, func.count())
        .select_from(Assignment)
        .join(User, User.id == Assignment.user_id)
        .where(Assignment.project_id == project.id, Assignment.status == "pending")
        .group_by(User.username)
    ).all():
        per_user.setdefault(name, AnnotatorStats(name)).pending = n
    for name, ts in times.items():
        per_user[name].median_seconds = statistics.median(ts)
    st.complete_items = sum(1 for n in done_per_item.values() if n >= project.overlap)
    _agreement(st, rows, per_user)
    st.annotators = sorted(per_user.values(), key=lambda a: a.username)
    return st


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def format_stats(st: ProjectStats) -> str:
    """A plain-text report for the terminal."""
    lines = [
        f"project {st.project}: {st.samples} samples, {st.items} pairs, overlap {st.overlap}",
        f"progress: {st.done}/{st.target} judgements ({st.progress:.1%}), {st.complete_items} pairs complete, "
        f"{st.skipped} skipped, {st.flagged} flagged",
        f"agreement: Krippendorff alpha (a/b/tie, nominal) {_fmt(st.alpha_label)}, "
        f"alpha (5-point, ordinal) {_fmt(st.alpha_choice)}, "
        f"mean Cohen kappa {_fmt(st.kappa_mean)} over {st.kappa_pairs} annotator pairs",
        f"cycles: {st.cycles} intransitive of {st.triangles_checked} fully judged response triangles",
        "",
        f"{'annotator':<20} {'done':>6} {'skip':>5} {'flag':>5} {'open':>5} {'med s':>7} {'vs majority':>14}",
    ]
    for a in st.annotators:
        maj = f"{_fmt(a.majority_rate, 2)} ({a.majority_n})" if a.majority_n else "n/a"
        lines.append(
            f"{a.username:<20} {a.done:>6} {a.skipped:>5} {a.flagged:>5} {a.pending:>5} "
            f"{_fmt(a.median_seconds, 1):>7} {maj:>14}"
        )
    return "\n".join(lines)
