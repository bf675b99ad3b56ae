"""Post-filtering of preference labels: ``chatglm-rlhf filter IN -o OUT``.

Rules, in the order they are applied (a label is dropped for the first rule that hits it):

``unreadable``          the line is not a valid comparison (bad JSON, missing field...)
``empty_response``      one of the two responses is empty or whitespace
``identical_responses`` both responses are the same text
``prompt_too_short``    the prompt has fewer words/characters than the prompt rules ask (first turns only)
``prompt_unclear``      the prompt matches an "unclear" rule (mostly symbols, one word repeated, a pattern)
``duplicate``           the same annotator gave the same label to the same pair again
``spammer``             the annotator agrees with the other annotators' majority less than the threshold
``outvoted``            the label lost the per-pair majority vote (its pair is kept with the majority label)
``no_majority``         the pair's top labels are tied (e.g. one "a", one "b")
``low_agreement``       the majority's share is below ``min_agreement``
``tie``                 the pair's majority label is "tie" (kept as a 0.5 label with ``keep_ties=true``)
``cycle``               the pair lies on a cycle of its prompt's preference graph (a > b > c > a)
``length_balance``      down-sampled away by bucket-based length balancing

Every read line ends up in exactly one place: merged into an output pair (``kept``) or in the drop
ledger with its reason, so ``kept + dropped = read`` always holds (checked, not assumed).

The rules see each label as a :class:`~.filter_votes.Vote` (hashed texts, lengths, label, annotator);
texts are read back only to write the outputs (``filter_run`` re-reads a JSONL file's lines by byte
offset), so a file of the paper's 221,866 comparisons filters in a fraction of its own size.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from chatglm_rlhf.config import field_
from chatglm_rlhf.data.formats import InputFormat
from chatglm_rlhf.data.schema import Comparison
from chatglm_rlhf.reward import aggregation as agg
from chatglm_rlhf.reward.balancing import (
    Balance,
    BalanceWithin,
    BucketRow,
    balance,
    strength_strata,
    word_length,
)
from chatglm_rlhf.reward.filter_votes import Dropped, LabelRecords, Records, Vote, describe

REASONS = (
    "unreadable",
    "empty_response",
    "identical_responses",
    "prompt_too_short",
    "prompt_unclear",
    "duplicate",
    "spammer",
    "outvoted",
    "no_majority",
    "low_agreement",
    "tie",
    "cycle",
    "length_balance",
)


@dataclass
class PromptRules:
    enabled: bool = field_(True, help="apply the prompt-side rules below")
    min_words: int = field_(2, help="a first-turn prompt needs at least this many words")
    min_chars: int = field_(3, help="a first-turn prompt needs at least this many non-space characters")
    short_with_history: bool = field_(
        False, help="also apply min_words/min_chars to follow-up prompts ('Why?' is clear in context)"
    )
    min_alnum_ratio: float = field_(0.3, help="unclear if letters+digits are below this share of characters")
    max_word_repeat: float = field_(
        0.6, help="unclear if one word is more than this share of a prompt of >= 4 words"
    )
    unclear_patterns: list[str] = field_(
        [r"^\W*(test(ing)?|asdf\w*|qwerty|x{3,}|a{3,})\W*$"],
        help="regexes (case-insensitive, searched) that mark a prompt unclear",
    )


@dataclass
class FilterConfig:
    PIPELINE_FILLED: ClassVar[tuple[str, ...]] = ("input", "output")  # a pipeline's filter stage sets them

    input: str = field_("", help="preference file (any format load_comparisons reads); or give it first")
    output: str = field_("", help="filtered pairs JSONL (-o); drops go to OUT.dropped.jsonl")
    format: InputFormat = field_("auto", help="input format (auto = detect it from the records)")
    strict: bool = field_(False, help="exit with an error when any input line is rejected (--strict)")
    aggregate: bool = field_(True, help="merge several annotators' labels of a pair by majority vote")
    keep_ties: bool = field_(False, help="keep pairs whose majority is 'tie' (trained as 0.5 labels)")
    dedupe: bool = field_(True, help="drop repeated identical labels (same annotator, pair and label)")
    drop_cycles: bool = field_(True, help="drop every comparison on a cycle of a prompt's preference graph")
    spam_threshold: float = field_(
        0.5, help="drop annotators agreeing with the others' majority less than this (0 = off)"
    )
    spam_min_items: int = field_(10, help="judge an annotator only after this many scored labels")
    min_agreement: float = field_(0.0, help="drop aggregated pairs whose majority share is below this")
    balance: Balance = field_(
        "reweight",
        help="length balancing of the kept pairs (reweight: the pipelines' choice, nothing dropped)",
    )
    balance_within: BalanceWithin = field_(
        "all",
        added=True,
        help="pairs the length buckets balance: all (the paper) | slight (only slight preferences, mean "
        "strength < 1.5, and pairs without one; clear ones kept as they are) | strength (slight and clear "
        "preferences each balanced on their own)",
    )
    bucket_edges: list[int] = field_([3, 10, 30, 100], help="length-difference bucket lower bounds (tokens)")
    tokenizer: str | None = field_(None, help="tokenizer path for lengths (default: whitespace words)")
    seed: int = field_(0, help="seed for down-sampling")
    prompt: PromptRules = field_(PromptRules(), help="prompt-side rules")


@dataclass
class Label:
    """One read comparison with where it came from (the in-memory input of :func:`filter_labels`)."""

    comparison: Comparison
    source: str  # "file:line"

    @property
    def key(self) -> tuple[str, str, str]:
        return agg.pair_key(self.comparison)

    @property
    def canon(self) -> str:
        return agg.canonical_label(self.comparison)


class KeptPairs(Sequence):
    """The output pairs, each built from its first voter's comparison when read (written one at a time)."""

    def __init__(self, pairs: list[Pair], records: Records) -> None:
        self.pairs, self.records = pairs, records

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [p.to_comparison(self.records) for p in self.pairs[i]]
        return self.pairs[i].to_comparison(self.records)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented


@dataclass
class FilterResult:
    kept: Sequence[Comparison]  # output pairs (one per aggregated pair), built when read
    dropped: list[Dropped]
    read: int
    kept_labels: int  # read labels merged into output pairs
    spammers: dict[str, float] = field(default_factory=dict)
    annotator_agreement: dict[str, tuple[int, int]] = field(default_factory=dict)
    pair_agreement: float | None = None  # mean majority share over pairs with >= 2 labels
    multi_label_pairs: int = 0
    balance_rows: list[BucketRow] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(d.reason for d in self.dropped)
        return {r: c[r] for r in REASONS if c[r]}

    def check(self) -> None:
        if self.kept_labels + len(self.dropped) != self.read:
            raise AssertionError(
                f"filter bookkeeping: kept {self.kept_labels} + dropped {len(self.dropped)} != read {self.read}"
            )


# --------------------------------------------------------------------------------------------------
# Per-label rules
# --------------------------------------------------------------------------------------------------


def prompt_problem(c: Comparison, rules: PromptRules) -> tuple[str, str] | None:
    """``(reason, detail)`` if the prompt breaks a rule, else None."""
    if not rules.enabled:
        return None
    text = c.prompt.strip()
    words = text.split()
    if not c.history or rules.short_with_history:
        chars = len("".join(words))
        if len(words) < rules.min_words or chars < rules.min_chars:
            return "prompt_too_short", f"{len(words)} words, {chars} chars"
    stripped = "".join(words)
    alnum = sum(ch.isalnum() for ch in stripped)
    if stripped and alnum / len(stripped) < rules.min_alnum_ratio:
        return "prompt_unclear", f"only {alnum}/{len(stripped)} letters or digits"
    if len(words) >= 4:
        (word, n), *_ = Counter(w.lower() for w in words).most_common(1)
        if n / len(words) > rules.max_word_repeat:
            return "prompt_unclear", f"{word!r} is {n} of {len(words)} words"
    for pattern in rules.unclear_patterns:
        if re.search(pattern, text, flags=re.IGNORECASE):
            return "prompt_unclear", f"matches {pattern!r}"
    return None


def label_problem(c: Comparison, rules: PromptRules) -> tuple[str, str] | None:
    if not c.response_a.strip() or not c.response_b.strip():
        return "empty_response", "response_a" if not c.response_a.strip() else "response_b"
    if c.response_a == c.response_b:
        return "identical_responses", ""
    return prompt_problem(c, rules)


def _dedupe(votes: list[Vote], records: Records, dropped: list[Dropped]) -> list[Vote]:
    seen: dict[tuple, int] = {}
    out = []
    for v in votes:
        k = (v.key, v.annotator, v.canon)
        if k in seen:
            dropped.append(Dropped("duplicate", f"same label as {records.source(seen[k])}", v.ref, records))
            continue
        seen[k] = v.ref
        out.append(v)
    return out


def _drop_spammers(
    votes: list[Vote], cfg: FilterConfig, records: Records, dropped: list[Dropped]
) -> tuple[list[Vote], dict[str, float], dict[str, tuple[int, int]]]:
    agreement = agg.annotator_agreement([(v.key, v.annotator, v.canon) for v in votes])
    if cfg.spam_threshold <= 0:
        return votes, {}, agreement
    spammers = agg.find_spammers(agreement, cfg.spam_threshold, cfg.spam_min_items)
    if spammers and set(spammers) == set(agreement):
        # "Spammer" is relative to the others; when no one agrees with the majority the labels are
        # noise (e.g. every answer equally bad), and dropping every annotator would leave nothing.
        print(f"filter: every annotator agrees with the majority under {cfg.spam_threshold:.0%} of the time: "
              "the labels look like noise (are all the answers alike?); no one is dropped as a spammer")  # fmt: skip
        return votes, {}, agreement
    out = []
    for v in votes:
        if v.annotator in spammers:
            detail = f"annotator {v.annotator!r} agrees with the majority {100 * spammers[v.annotator]:.0f}%"
            dropped.append(Dropped("spammer", detail, v.ref, records))
        else:
            out.append(v)
    return out, spammers, agreement


# --------------------------------------------------------------------------------------------------
# Per-pair steps
# --------------------------------------------------------------------------------------------------


@dataclass
class Pair:
    """An aggregated pair: its majority label (canonical) and the labels that voted for it."""

    key: tuple[str, int, int]
    canon: str
    voters: list[Vote]
    votes: Counter
    agreement: float
    weight: float = 1.0

    @property
    def strength(self) -> float | None:
        """The mean strength of the voters (None when no voter gave one)."""
        values = [v.strength for v in self.voters if v.strength is not None]
        return sum(values) / len(values) if values else None

    def to_comparison(self, records: Records) -> Comparison:
        first = records.comparison(self.voters[0].ref)
        annotators = sorted({str(v.annotator) for v in self.voters if v.annotator})
        label = agg.oriented_label(self.canon, first)
        a_is_lo = first.response_a <= first.response_b
        flip = {agg.LO: "a" if a_is_lo else "b", agg.HI: "b" if a_is_lo else "a", agg.TIE: "tie"}
        meta = dict(first.meta)
        meta.update(
            votes={flip[k]: n for k, n in sorted(self.votes.items())},
            agreement=self.agreement,
            sources=[records.source(v.ref) for v in self.voters],
        )
        if self.weight != 1.0:
            meta["weight"] = self.weight
        return Comparison(
            sample_id=first.sample_id,
            prompt=first.prompt,
            response_a=first.response_a,
            response_b=first.response_b,
            label=label,
            history=list(first.history),
            strength=self.strength,
            scores=first.scores,
            annotator=annotators[0] if len(annotators) == 1 else None,
            time=first.time,
            category=first.category,
            meta=meta,
        )


def _aggregate(
    votes: list[Vote], cfg: FilterConfig, records: Records, dropped: list[Dropped]
) -> tuple[list[Pair], list[float]]:
    """Majority-voted pairs, and the majority share of every pair with >= 2 labels (for the report)."""
    groups: dict[tuple, list[Vote]] = defaultdict(list)
    for v in votes:
        # Without aggregation every label is its own "pair"; conflicting ones then form 2-cycles.
        groups[v.key if cfg.aggregate else (v.key, v.ref)].append(v)
    pairs, shares = [], []
    for group in groups.values():
        counts = Counter(v.canon for v in group)
        top, share = agg.majority(v.canon for v in group)
        if len(group) >= 2:
            shares.append(share)
        if top is None:
            dropped += [Dropped("no_majority", f"votes {dict(counts)}", v.ref, records) for v in group]
            continue
        winners = [v for v in group if v.canon == top]
        detail = f"majority {top} {dict(counts)}"
        dropped += [Dropped("outvoted", detail, v.ref, records) for v in group if v.canon != top]
        if share < cfg.min_agreement:
            detail = f"agreement {share:.2f} < {cfg.min_agreement}"
            dropped += [Dropped("low_agreement", detail, v.ref, records) for v in winners]
            continue
        pairs.append(Pair(group[0].key, top, winners, counts, share))
    return pairs, shares


def _drop_pairs(pairs: list[Pair], bad: set[int], reason: str, detail: str, records: Records, dropped):
    for i in sorted(bad):
        dropped += [Dropped(reason, detail, v.ref, records) for v in pairs[i].voters]
    return [p for i, p in enumerate(pairs) if i not in bad]


def _drop_ties(pairs: list[Pair], cfg: FilterConfig, records: Records, dropped: list[Dropped]) -> list[Pair]:
    if cfg.keep_ties:
        return pairs
    ties = {i for i, p in enumerate(pairs) if p.canon == agg.TIE}
    return _drop_pairs(pairs, ties, "tie", "majority label is tie", records, dropped)


def _drop_cycles(pairs: list[Pair], records: Records, dropped: list[Dropped]) -> list[Pair]:
    by_context: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        if p.canon != agg.TIE:
            by_context[p.key[0]].append(i)
    bad: set[int] = set()
    for idx in by_context.values():
        edges = []
        for i in idx:
            _, lo, hi = pairs[i].key
            edges.append((lo, hi) if pairs[i].canon == agg.LO else (hi, lo))
        bad |= {idx[j] for j in agg.cycle_edges(edges)}
    return _drop_pairs(pairs, bad, "cycle", "on a preference cycle of its prompt", records, dropped)


def _balance(
    pairs: list[Pair], cfg: FilterConfig, records: Records, dropped: list[Dropped]
) -> tuple[list[Pair], list[BucketRow]]:
    decided = [i for i, p in enumerate(pairs) if p.canon != agg.TIE]
    lengths = []
    for i in decided:
        lo, hi = pairs[i].voters[0].lengths
        lengths.append((lo, hi) if pairs[i].canon == agg.LO else (hi, lo))  # (chosen, rejected)
    strata = strength_strata([pairs[i].strength for i in decided], cfg.balance_within)
    weights, rows = balance(lengths, cfg.bucket_edges, cfg.balance, seed=cfg.seed, strata=strata)
    bad = set()
    for i, w in zip(decided, weights):
        if w == 0.0:
            bad.add(i)
        pairs[i].weight = w
    kept = _drop_pairs(pairs, bad, "length_balance", "down-sampled in its length bucket", records, dropped)
    return kept, rows


# --------------------------------------------------------------------------------------------------
# The whole filter
# --------------------------------------------------------------------------------------------------


def screen(c: Comparison, ref: int, cfg: FilterConfig, length_fn, records: Records) -> Vote | Dropped:
    """A label's per-label rules: the :class:`Dropped` entry if one hits, else its :class:`Vote`."""
    problem = label_problem(c, cfg.prompt)
    return Dropped(problem[0], problem[1], ref, records) if problem else describe(c, ref, length_fn)


def filter_votes(
    votes: list[Vote], dropped: list[Dropped], read: int, cfg: FilterConfig, records: Records
) -> FilterResult:
    """The rules after the per-label ones, on the votes of the labels that passed them (:func:`screen`)."""
    if cfg.dedupe:
        votes = _dedupe(votes, records, dropped)
    votes, spammers, agreement = _drop_spammers(votes, cfg, records, dropped)
    pairs, multi = _aggregate(votes, cfg, records, dropped)
    pairs = _drop_ties(pairs, cfg, records, dropped)
    if cfg.drop_cycles:
        pairs = _drop_cycles(pairs, records, dropped)
    pairs, rows = _balance(pairs, cfg, records, dropped)
    result = FilterResult(
        kept=KeptPairs(pairs, records),
        dropped=dropped,
        read=read,
        kept_labels=sum(len(p.voters) for p in pairs),
        spammers=spammers,
        annotator_agreement=agreement,
        pair_agreement=sum(multi) / len(multi) if multi else None,
        multi_label_pairs=len(multi),
        balance_rows=rows,
    )
    result.check()
    return result


def unreadable_entry(message: str) -> Dropped:
    """The ledger entry of a ``file:line: reason`` rejection."""
    return Dropped("unreadable", message, None, where=message.split(": ", 1)[0])


def filter_labels(
    labels: Sequence[Label],
    cfg: FilterConfig,
    length_fn: Callable[[str], int] = word_length,
    unreadable: Sequence[str] = (),
) -> FilterResult:
    """Apply every rule (module docstring) to ``labels``; ``unreadable`` are ``file:line: reason`` strings."""
    records = LabelRecords(labels)
    dropped = [unreadable_entry(msg) for msg in unreadable]
    votes = []
    for ref, lab in enumerate(labels):
        out = screen(lab.comparison, ref, cfg, length_fn, records)
        (dropped if isinstance(out, Dropped) else votes).append(out)
    return filter_votes(votes, dropped, len(labels) + len(unreadable), cfg, records)
