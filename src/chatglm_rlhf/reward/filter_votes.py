"""The filter's view of a label: a :class:`Vote` (keys, label, annotator, lengths: no texts) and a
:class:`Records` store that gives back a label's comparison and ``file:line`` by index when an output
or ledger line is written. The rules (:mod:`.filtering`) run on votes only, so the filter's memory is a
few hundred bytes a label, not the labels' dialogues (~9 KB each at the paper's shape)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chatglm_rlhf.data.schema import Comparison
from chatglm_rlhf.reward import aggregation as agg


class Records(Protocol):
    """Where the labels' comparisons live, by index (``ref``): a list in memory, or a file re-read on
    demand (``filter_run``), so that the rules run on :class:`Vote` s and never hold every text."""

    def source(self, ref: int) -> str: ...

    def comparison(self, ref: int) -> Comparison: ...


class LabelRecords:
    """Labels in memory (anything with ``.comparison`` and ``.source``, e.g. ``filtering.Label``)."""

    def __init__(self, labels: Sequence[Any]) -> None:
        self.labels = labels

    def source(self, ref: int) -> str:
        return self.labels[ref].source

    def comparison(self, ref: int) -> Comparison:
        return self.labels[ref].comparison


def _digest(text: str) -> int:
    # 128 bits: two different texts among a few million share a digest with probability ~1e-26.
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest(), "little")


@dataclass(slots=True)
class Vote:
    """What the rules need of one label, without its texts: ~300 bytes instead of the whole dialogue."""

    ref: int  # the label's index in its Records
    key: tuple[str, int, int]  # (context key, digest of the smaller response, digest of the larger)
    canon: str  # lo / hi / tie
    annotator: str | None
    strength: float | None
    lengths: tuple[int, int]  # lengths of the smaller and the larger response (for length balancing)


def describe(c: Comparison, ref: int, length_fn: Callable[[str], int]) -> Vote:
    lo, hi = sorted((c.response_a, c.response_b))
    key = (agg.context_key(c), _digest(lo), _digest(hi))
    annotator = sys.intern(c.annotator) if isinstance(c.annotator, str) else c.annotator
    return Vote(ref, key, agg.canonical_label(c), annotator, c.strength, (length_fn(lo), length_fn(hi)))


@dataclass(slots=True)
class Dropped:
    reason: str
    detail: str
    ref: int | None  # the label's index in ``records``; None for an unreadable line
    records: Records | None = None
    where: str = ""  # the source of an unreadable line

    @property
    def source(self) -> str:
        return (
            self.records.source(self.ref) if self.records is not None and self.ref is not None else self.where
        )

    @property
    def comparison(self) -> Comparison | None:
        return (
            self.records.comparison(self.ref) if self.records is not None and self.ref is not None else None
        )

    def to_dict(self) -> dict[str, Any]:
        c = self.comparison
        return {"reason": self.reason, "detail": self.detail, "source": self.source,
                "comparison": c.to_dict() if c else None}  # fmt: skip
