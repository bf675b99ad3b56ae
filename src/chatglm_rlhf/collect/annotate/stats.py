"""Progress, per-annotator counts and speed, and agreement for one project (CLI ``stats`` and /admin).

The annotations stream through once, grouped by sample and item, into accumulators; medians are
fetched by the database. Memory stays flat however many annotations a project has.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatglm_rlhf.collect.annotate.agreement import (
    Coincidences,
    MajorityAgreement,
    PairwiseKappa,
    count_cycles,
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
class RoundProgress:
    """One feedback round's share of a project (its batch's samples, pairs and judgements)."""

    round: int
    samples: int = 0
    items: int = 0
    done: int = 0
    target: int = 0  # items x the project's overlap

    @property
    def progress(self) -> float:
        return min(1.0, self.done / self.target) if self.target else 0.0


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
    rounds: list[RoundProgress] = field(default_factory=list)

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
        for r, obj in zip(d["rounds"], self.rounds):
            r["progress"] = obj.progress
        return d


STATS_BATCH = 2000  # annotation rows fetched at a time


def _rows(s: Session, project: Project):
    """The project's annotations, streamed, grouped by sample and then by item (both contiguous)."""
    return s.execute(
        select(
            User.username,
            Annotation.item_id,
            Annotation.skipped,
            Annotation.label,
            Annotation.choice,
            Annotation.flags,
            Item.sample_pk,
            Item.idx_a,
            Item.idx_b,
        )
        .join(User, User.id == Annotation.user_id)
        .join(Item, Item.id == Annotation.item_id)
        .where(Annotation.project_id == project.id)
        .order_by(Item.sample_pk, Annotation.item_id)
        .execution_options(yield_per=STATS_BATCH)
    )


class _Tally:
    """Counts and agreement fed one item (and one sample) at a time: its memory is the number of
    annotators and label values, not the number of annotations."""

    def __init__(self, overlap: int) -> None:
        self.overlap, self.complete_items, self.triangles, self.cycles = overlap, 0, 0, 0
        self.alpha_label, self.alpha_choice = Coincidences(), Coincidences()
        self.kappa, self.majority = PairwiseKappa(), MajorityAgreement()

    def item(self, votes: dict[str, str], choices: list[int]) -> None:
        """One item's judgements (skips left out): {annotator: label} and the 5-point choices."""
        self.complete_items += int(len(choices) >= self.overlap)
        self.alpha_label.add(list(votes.values()))
        self.alpha_choice.add(choices)
        self.kappa.add(votes)
        self.majority.add(votes)

    def sample(self, prefs: dict[str, dict[tuple[int, int], str]]) -> None:
        """One sample's judgements per annotator, {annotator: {(i, j): label}}: its cycles."""
        for p in prefs.values():
            checked, cyclic = count_cycles(p)
            self.triangles += checked
            self.cycles += cyclic


def _stream(s: Session, project: Project, st: ProjectStats, per_user: dict[str, AnnotatorStats]) -> _Tally:
    tally = _Tally(project.overlap)
    votes: dict[str, str] = {}
    choices: list[int] = []
    prefs: dict[str, dict[tuple[int, int], str]] = defaultdict(dict)
    item = sample = None
    for r in _rows(s, project):
        if r.item_id != item:
            if votes:
                tally.item(votes, choices)
            item, votes, choices = r.item_id, {}, []
        if r.sample_pk != sample:
            tally.sample(prefs)
            sample, prefs = r.sample_pk, defaultdict(dict)
        a = per_user.setdefault(r.username, AnnotatorStats(r.username))
        a.flagged += int(bool(r.flags))
        st.flagged += int(bool(r.flags))
        if r.skipped:
            a.skipped += 1
            st.skipped += 1
            continue
        a.done += 1
        st.done += 1
        votes[r.username] = r.label
        choices.append(r.choice)
        prefs[r.username][(r.idx_a, r.idx_b)] = r.label
    if votes:
        tally.item(votes, choices)
    tally.sample(prefs)
    return tally


def _median_seconds(s: Session, project: Project) -> dict[str, float]:
    """Each annotator's median time per judgement, the middle row(s) fetched by the database (a list
    of every time per annotator would grow with the project)."""
    judged = (Annotation.project_id == project.id) & Annotation.skipped.is_(False)
    timed = judged & Annotation.time_spent_ms.is_not(None)
    counts = s.execute(
        select(User.id, User.username, func.count())
        .join(Annotation, Annotation.user_id == User.id)
        .where(timed)
        .group_by(User.id, User.username)
    ).all()
    out = {}
    for user_id, name, n in counts:
        middle = s.scalars(
            select(Annotation.time_spent_ms)
            .where(timed, Annotation.user_id == user_id)
            .order_by(Annotation.time_spent_ms)
            .offset((n - 1) // 2)
            .limit(2 - n % 2)
        ).all()
        out[name] = statistics.median([ms / 1000.0 for ms in middle])
    return out


def round_progress(s: Session, project: Project) -> list[RoundProgress]:
    """Samples, pairs and judgements per feedback round: three grouped counts (the project's totals
    are their sums, so this costs one query more than the totals alone did)."""
    per: dict[int, RoundProgress] = {}
    by_round = Sample.round
    queries = (
        ("samples", select(by_round, func.count()).where(Sample.project_id == project.id)),
        ("items", select(by_round, func.count(Item.id)).join(Sample, Sample.id == Item.sample_pk)
         .where(Item.project_id == project.id)),
        ("done", select(by_round, func.count(Annotation.id)).join(Item, Item.id == Annotation.item_id)
         .join(Sample, Sample.id == Item.sample_pk)
         .where(Annotation.project_id == project.id, Annotation.skipped.is_(False))),
    )  # fmt: skip
    for key, q in queries:
        for rnd, n in s.execute(q.group_by(by_round)):
            setattr(per.setdefault(rnd, RoundProgress(rnd)), key, n)
    for r in per.values():
        r.target = r.items * project.overlap
    return [per[k] for k in sorted(per)]


def project_stats(s: Session, project: Project) -> ProjectStats:
    st = ProjectStats(project=project.name, overlap=project.overlap)
    st.rounds = round_progress(s, project)
    st.samples, st.items = sum(r.samples for r in st.rounds), sum(r.items for r in st.rounds)
    per_user: dict[str, AnnotatorStats] = {}
    tally = _stream(s, project, st, per_user)
    for name, n in s.execute(
        select(User.username, func.count())
        .select_from(Assignment)
        .join(User, User.id == Assignment.user_id)
        .where(Assignment.project_id == project.id, Assignment.status == "pending")
        .group_by(User.username)
    ).all():
        per_user.setdefault(name, AnnotatorStats(name)).pending = n
    for name, median in _median_seconds(s, project).items():
        per_user[name].median_seconds = median
    st.complete_items, st.triangles_checked, st.cycles = tally.complete_items, tally.triangles, tally.cycles
    st.alpha_label = tally.alpha_label.alpha("nominal")
    st.alpha_choice = tally.alpha_choice.alpha("ordinal")
    st.kappa_mean, st.kappa_pairs = tally.kappa.mean()
    for user, (agree, n) in tally.majority.result().items():
        per_user[user].majority_agree, per_user[user].majority_n = agree, n
    st.annotators = sorted(per_user.values(), key=lambda a: a.username)
    return st


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def round_line(rounds: list[RoundProgress]) -> str:
    """``round 1 40/40 (100.0%), round 2 3/12 (25.0%)``: judgements per feedback round."""
    return ", ".join(f"round {r.round} {r.done}/{r.target} ({r.progress:.1%})" for r in rounds)


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
        *([f"rounds: {round_line(st.rounds)}"] if len(st.rounds) > 1 else []),
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
