"""Simulated annotators: noisy, length-biased, sometimes spamming judges built on the gold judge.

An honest annotator's utility difference between A and B is

    d = (gold_total(A) - gold_total(B)) + length_bias * (words(A) - words(B)) / 10 + N(0, noise)

and the label is "tie" when ``|d| < tie_margin``, else the side ``d`` favours; strength is 2 when
``|d| >= strong_margin``. ``length_bias`` is utility per 10 extra words, so the default pool (0.1)
prefers a good answer with ~10 words of polite filler over the same answer without, although the gold
judge calls them a tie: the bias the reward model's length balancing has to remove. A spammer ignores
the responses and answers at random.

Everything is reproducible: :meth:`AnnotatorPool.annotate` seeds one ``random.Random`` per
(pool seed, sample, pair) from a string, so results do not depend on call order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from chatglm_rlhf.data.schema import CRITERIA, Comparison, DialogueSample
from chatglm_rlhf.tasks.demo.judge import TIE_MARGIN, GoldJudge, GoldScore

NEAR_TIE = 0.15  # gold totals closer than this: the annotators' length bias applies
BASE_TIME = datetime(2024, 3, 1, tzinfo=timezone.utc)
_TIME_SPAN_S = 90 * 86400  # judgements are spread over a 90-day campaign
_JUDGE: GoldJudge | None = None


def gold_judge() -> GoldJudge:
    """A shared judge (building the lexicon once)."""
    global _JUDGE
    if _JUDGE is None:
        _JUDGE = GoldJudge()
    return _JUDGE


def n_words(text: str) -> int:
    return len(text.split())


def _likert(value: float, noise: float, rng: random.Random) -> int:
    """A 1-5 score from a gold criterion in [0, 1] plus annotator noise."""
    return int(min(5, max(1, round(1 + 4 * (value + rng.gauss(0.0, noise))))))


@dataclass
class SimulatedAnnotator:
    id: str
    noise: float = 0.05
    length_bias: float = 0.0
    tie_margin: float = TIE_MARGIN
    spammer: bool = False
    strong_margin: float = 0.3

    def utility_diff(self, ga: GoldScore, gb: GoldScore, a: str, b: str, rng: random.Random) -> float:
        # The paper's problem: where the answers are about equally good, raters lean to the longer one.
        near_tie = abs(ga.total - gb.total) < NEAR_TIE
        bias = self.length_bias * (n_words(a) - n_words(b)) / 10 if near_tie else 0.0
        return ga.total - gb.total + bias + rng.gauss(0.0, self.noise)

    def judge(self, sample: DialogueSample, a: str, b: str, rng: random.Random) -> Comparison:
        judge = gold_judge()
        ga, gb = judge.score(sample, a), judge.score(sample, b)
        if self.spammer:
            label = rng.choices(("a", "b", "tie"), (0.4, 0.4, 0.2))[0]
            diff = None
            strength = None if label == "tie" else float(rng.choice((1, 2)))
            scores = {x: {c: rng.randint(1, 5) for c in CRITERIA} for x in ("a", "b")}
        else:
            diff = self.utility_diff(ga, gb, a, b, rng)
            label = "tie" if abs(diff) < self.tie_margin else ("a" if diff > 0 else "b")
            strength = None if label == "tie" else (2.0 if abs(diff) >= self.strong_margin else 1.0)
            scores = {
                x: {c: _likert(getattr(g, c), self.noise, rng) for c in CRITERIA}
                for x, g in (("a", ga), ("b", gb))
            }
        gold_diff = ga.total - gb.total
        gold_label = "tie" if abs(gold_diff) < TIE_MARGIN else ("a" if gold_diff > 0 else "b")
        time = BASE_TIME + timedelta(seconds=rng.randrange(_TIME_SPAN_S))
        return Comparison(
            sample_id=sample.id,
            prompt=sample.prompt,
            response_a=a,
            response_b=b,
            label=label,
            history=list(sample.history),
            strength=strength,
            scores=scores,
            annotator=self.id,
            time=time.isoformat(),
            category=sample.category,
            meta={
                "gold_a": ga.total,
                "gold_b": gb.total,
                "gold_label": gold_label,
                "utility_diff": diff,
                "spammer": self.spammer,
            },
        )


def _pairs(k: int, mode: str) -> list[tuple[int, int]]:
    if mode == "all":  # with k = 3 all three pairs, so cyclic preferences can appear
        return [(i, j) for i in range(k) for j in range(i + 1, k)]
    if mode == "adjacent":
        return [(i, i + 1) for i in range(k - 1)]
    raise ValueError(f"pairs must be 'all' or 'adjacent', got {mode!r}")


class AnnotatorPool:
    """``n_annotators`` annotators (ids ``ann-00`` ...), the last ``n_spammers`` of which are spammers.

    Pass ``annotators`` to use a hand-made list instead (the other settings are then ignored).
    """

    def __init__(
        self,
        n_annotators: int = 5,
        n_spammers: int = 1,
        noise: float = 0.05,
        length_bias: float = 0.1,
        tie_margin: float = TIE_MARGIN,
        seed: int = 0,
        annotators: Sequence[SimulatedAnnotator] | None = None,
    ) -> None:
        self.seed = seed
        if annotators is None:
            if not 0 <= n_spammers <= n_annotators or n_annotators < 1:
                raise ValueError(
                    f"need 1 <= n_annotators and 0 <= n_spammers <= n_annotators, got {n_annotators}, {n_spammers}"
                )
            annotators = [
                SimulatedAnnotator(
                    f"ann-{i:02d}", noise, length_bias, tie_margin, spammer=i >= n_annotators - n_spammers
                )
                for i in range(n_annotators)
            ]
        self.annotators = list(annotators)
        if len({a.id for a in self.annotators}) != len(self.annotators):
            raise ValueError("annotator ids must be unique")

    def annotate(
        self, samples: Sequence[DialogueSample], overlap: int = 1, pairs: str = "all"
    ) -> list[Comparison]:
        """Judge every response pair of every sample by ``overlap`` distinct annotators.

        Which response is shown as A is random per judgement; ``meta`` records ``pair`` (the response
        indices i < j), ``index_a``/``index_b`` and ``swapped`` (True when A is response j).
        """
        if not 1 <= overlap <= len(self.annotators):
            raise ValueError(f"overlap must be between 1 and {len(self.annotators)}, got {overlap}")
        out = []
        for sample in samples:
            if len(sample.responses) < 2:
                raise ValueError(f"sample {sample.id!r} has {len(sample.responses)} responses; need >= 2")
            for i, j in _pairs(len(sample.responses), pairs):
                ri, rj = sample.responses[i], sample.responses[j]
                rng = random.Random(f"pool|{self.seed}|{sample.id}|{i}|{j}|{ri}|{rj}")
                for ann in rng.sample(self.annotators, overlap):
                    swapped = rng.random() < 0.5
                    ia, ib = (j, i) if swapped else (i, j)
                    c = ann.judge(sample, sample.responses[ia], sample.responses[ib], rng)
                    c.meta.update({"pair": [i, j], "index_a": ia, "index_b": ib, "swapped": swapped})
                    out.append(c)
        return out
