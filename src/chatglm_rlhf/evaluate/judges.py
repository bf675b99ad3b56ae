"""Judges: who decides which of two answers to the same prompt is better.

Every judge has ``compare(sample, a, b) -> "a" | "b" | "tie"`` and a batched
``compare_many(samples, a_list, b_list) -> list[str]`` (what evaluation calls). Three kinds:

* :class:`ScoreJudge` (alias :class:`RewardJudge`): anything with the reward interface
  ``score(samples, responses) -> list[float]`` (the reward model's ``RewardScorer``, the demo's gold
  judge, a test fake). The higher score wins; ``|delta| < tie_threshold`` (or an exact tie) is a tie.
* :class:`GoldJudgeAdapter`: the demo world's gold judge, through its ``compare`` when it has one, else
  through its ``score``.
* :class:`LLMJudge`: a local HF chat model asked which answer is better. LLM judges prefer whichever
  answer comes first (or second); so each pair is asked **in both orders** and only an answer that wins
  both times wins. Disagreement, or a reply that names neither answer, is a tie
  (:class:`BothOrdersJudge` holds that logic, independent of any model).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from chatglm_rlhf.data.schema import DialogueSample

VERDICTS = ("a", "b", "tie")


@runtime_checkable
class Judge(Protocol):
    def compare(self, sample: DialogueSample, a: str, b: str) -> str: ...


def judge_pairs(judge, samples: Sequence[DialogueSample], a: Sequence[str], b: Sequence[str]) -> list[str]:
    """Verdicts for all pairs, batched when the judge supports it; each checked to be a verdict."""
    if not (len(samples) == len(a) == len(b)):
        raise ValueError(f"{len(samples)} samples, {len(a)} a-answers and {len(b)} b-answers")
    if hasattr(judge, "compare_many"):
        out = list(judge.compare_many(list(samples), list(a), list(b)))
    else:
        out = [judge.compare(s, x, y) for s, x, y in zip(samples, a, b)]
    bad = [v for v in out if v not in VERDICTS]
    if bad or len(out) != len(samples):
        raise ValueError(
            f"judge {type(judge).__name__} returned {bad[:3] or len(out)}; expected a|b|tie each"
        )
    return out


def verdict_from_scores(score_a: float, score_b: float, tie_threshold: float = 0.0) -> str:
    """``"a"`` if ``a`` scores higher by at least ``tie_threshold``, ``"b"`` likewise, else ``"tie"``."""
    delta = float(score_a) - float(score_b)
    if delta == 0.0 or abs(delta) < tie_threshold:
        return "tie"
    return "a" if delta > 0 else "b"


class ScoreJudge:
    """Compares two answers by ``scorer.score``; ties when the scores differ by less than the threshold."""

    def __init__(self, scorer, tie_threshold: float = 0.0, name: str = "score"):
        if not hasattr(scorer, "score"):
            raise TypeError(f"{type(scorer).__name__} has no score(samples, responses) method")
        if tie_threshold < 0:
            raise ValueError(f"tie_threshold must be >= 0, got {tie_threshold}")
        self.scorer = scorer
        self.tie_threshold = tie_threshold
        self.name = name
        self.last_scores: tuple[list[float], list[float]] = ([], [])

    def compare(self, sample: DialogueSample, a: str, b: str) -> str:
        return self.compare_many([sample], [a], [b])[0]

    def compare_many(self, samples: list[DialogueSample], a: list[str], b: list[str]) -> list[str]:
        # One score call for both sides: a reward model batches them, and both see the same state.
        scores = [float(x) for x in self.scorer.score(samples + samples, a + b)]
        sa, sb = scores[: len(a)], scores[len(a) :]
        self.last_scores = (sa, sb)
        return [verdict_from_scores(x, y, self.tie_threshold) for x, y in zip(sa, sb)]

    def describe(self) -> dict:
        return {"judge": self.name, "tie_threshold": self.tie_threshold}


class RewardJudge(ScoreJudge):
    """A reward model as judge: ``RewardJudge(RewardScorer(...), tie_threshold=0.1)``."""

    def __init__(self, scorer, tie_threshold: float = 0.0):
        super().__init__(scorer, tie_threshold, name="rm")


class _Totals:
    """``score(samples, responses) -> list[float]`` over a gold judge's ``score_many`` or batched ``score``.

    The demo's ``GoldJudge.score_many`` returns ``GoldScore`` objects: their ``total`` is the score.
    """

    def __init__(self, gold):
        self.gold = gold

    def score(self, samples: list[DialogueSample], responses: list[str]) -> list[float]:
        many = getattr(self.gold, "score_many", None)
        raw = many(samples, responses) if callable(many) else self.gold.score(samples, responses)
        return [float(getattr(x, "total", x)) for x in raw]


class GoldJudgeAdapter:
    """The demo world's gold judge (or any object with ``compare`` or ``score``) as a :class:`Judge`.

    A ``compare(sample, a, b[, tie_margin])`` method decides (with ``tie_threshold`` passed as its
    ``tie_margin`` when given, else the gold judge's own margin); otherwise totals from ``score_many`` /
    ``score`` are compared as in :class:`ScoreJudge` (``tie_threshold`` None = exact ties only).
    ``last_scores`` holds both sides' totals of the last batch (the mean gold score per model).
    """

    def __init__(self, gold, tie_threshold: float | None = None):
        self.gold = gold
        self.name = "gold"
        self.tie_threshold = tie_threshold
        self.totals = _Totals(gold)
        self.has_compare = callable(getattr(gold, "compare", None))
        if not self.has_compare and not hasattr(gold, "score"):
            raise TypeError(f"{type(gold).__name__} has neither compare(sample, a, b) nor score(...)")
        self._scores = None if self.has_compare else ScoreJudge(self.totals, tie_threshold or 0.0, "gold")
        self.last_scores: tuple[list[float], list[float]] = ([], [])

    def compare(self, sample: DialogueSample, a: str, b: str) -> str:
        return self.compare_many([sample], [a], [b])[0]

    def compare_many(self, samples: list[DialogueSample], a: list[str], b: list[str]) -> list[str]:
        if self._scores is not None:
            out = self._scores.compare_many(samples, a, b)
            self.last_scores = self._scores.last_scores
            return out
        kw = {} if self.tie_threshold is None else {"tie_margin": self.tie_threshold}
        out = [self.gold.compare(s, x, y, **kw) for s, x, y in zip(samples, a, b)]
        if hasattr(self.gold, "score_many") or hasattr(self.gold, "score"):
            try:
                self.last_scores = (self.totals.score(samples, a), self.totals.score(samples, b))
            except TypeError:  # a compare-only judge whose score has another signature: no totals
                self.last_scores = ([], [])
        return out

    def describe(self) -> dict:
        return {"judge": "gold", "tie_threshold": self.tie_threshold}


# -------------------------------------------------------------------------------------------------
# Both orders
# -------------------------------------------------------------------------------------------------

# Asks "which is better, A or B?" for many (sample, first, second) triples at once; each reply is
# "A", "B", "tie" or None (unreadable).
AskFn = Callable[[list[DialogueSample], list[str], list[str]], list[str | None]]


def combine_orders(first: str | None, second: str | None) -> str:
    """Verdict for answer ``a`` from two asks: (a shown as A, b as B) and (b shown as A, a as B)."""
    in_first = {"A": "a", "B": "b"}.get(first or "")
    in_second = {"A": "b", "B": "a"}.get(second or "")
    if in_first is not None and in_first == in_second:
        return in_first
    return "tie"  # disagreement (position bias), an explicit tie, or an unreadable reply


class BothOrdersJudge:
    """Asks every pair twice with the answers swapped; agreement decides, disagreement is a tie.

    An always-"A" (or always-"B") asker therefore yields only ties. Counters: ``agreement_rate`` (share
    of pairs whose two asks name the same answer or both say tie), ``unparsed`` (replies that named neither answer).
    """

    def __init__(self, ask: AskFn, name: str = "llm"):
        self.ask = ask
        self.name = name
        self.pairs = 0
        self.agreed = 0
        self.unparsed = 0
        self.first_position_wins = 0  # replies "A": a high share shows position bias
        self.replies = 0

    def compare(self, sample: DialogueSample, a: str, b: str) -> str:
        return self.compare_many([sample], [a], [b])[0]

    def compare_many(self, samples: list[DialogueSample], a: list[str], b: list[str]) -> list[str]:
        n = len(samples)
        replies = self.ask(samples + samples, a + b, b + a)
        if len(replies) != 2 * n:
            raise ValueError(f"ask returned {len(replies)} replies for {2 * n} questions")
        out = []
        for first, second in zip(replies[:n], replies[n:]):
            verdict = combine_orders(first, second)
            self.pairs += 1
            self.agreed += int(verdict != "tie" or first == second == "tie")
            for r in (first, second):
                self.replies += 1
                self.unparsed += int(r is None)
                self.first_position_wins += int(r == "A")
            out.append(verdict)
        return out

    @property
    def agreement_rate(self) -> float:
        return self.agreed / self.pairs if self.pairs else float("nan")

    def describe(self) -> dict:
        return {
            "judge": self.name,
            "pairs": self.pairs,
            "agreement_rate": self.agreement_rate,
            "unparsed_replies": self.unparsed,
            "first_position_rate": self.first_position_wins / self.replies if self.replies else float("nan"),
        }


# -------------------------------------------------------------------------------------------------
# LLM judge
# -------------------------------------------------------------------------------------------------

JUDGE_SYSTEM = (
    "You are a careful, impartial judge of AI assistant answers. You compare two answers to the same "
    "user message and decide which one is more helpful, correct, harmless and fluent. Length alone is "
    "not a merit."
)
JUDGE_TEMPLATE = """{conversation}[Answer A]
{first}
[End of answer A]

[Answer B]
{second}
[End of answer B]

Which answer is better? Reply with a single letter: A or B. If they are equally good, reply: tie."""

_BRACKETED = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
_LEADING = re.compile(r"^\W*(A|B)(?![A-Za-z])")
_NAMED = re.compile(r"\b(?:answer|response|assistant|option)\s*\(?([AB])\)?(?![A-Za-z])", re.IGNORECASE)
# "A good answer ..." starts with an article, not a verdict; "A is better" does not.
_ARTICLE = re.compile(r"^\W*A\s+(?!(?:is|was|wins|seems|looks|answers|gives|provides)\b)[a-z]")
_TIE = re.compile(r"^\W*(tie|equal|both)\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """``"A"``, ``"B"``, ``"tie"`` or ``None`` from a judge's reply.

    Accepts a bare leading letter ("A", "B.", "(B) because ..."), MT-Bench's "[[A]]", and "Answer B is
    better". A leading English article ("A better answer is B") is ambiguous in English, so the named
    form is tried before the bare letter when both appear.
    """
    text = text.strip()
    m = _BRACKETED.search(text)
    if m:
        v = m.group(1)
        return "tie" if v.lower() == "tie" else v.upper()
    if _TIE.match(text):
        return "tie"
    named = {x.upper() for x in _NAMED.findall(text)}
    if len(named) == 1:
        return named.pop()
    m = _LEADING.match(text)
    if m and not _ARTICLE.match(text):
        return m.group(1)
    return None


def _conversation_text(sample: DialogueSample) -> str:
    parts = []
    for t in sample.history:
        parts.append(f"[{t.role.capitalize()}]\n{t.content}\n")
    parts.append(f"[User question]\n{sample.prompt}\n")
    return "\n".join(parts) + "\n"


def judge_messages(sample: DialogueSample, first: str, second: str) -> list[dict[str, str]]:
    """The chat messages that ask the judge about (``first`` as A, ``second`` as B)."""
    user = JUDGE_TEMPLATE.format(conversation=_conversation_text(sample), first=first, second=second)
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


class LLMJudge(BothOrdersJudge):
    """A local chat model as judge, greedy, asked in both orders (see :class:`BothOrdersJudge`).

    ``generator`` defaults to ``models.generation.make_generator`` over ``model``; any
    object with the same ``generate`` works (tests pass a fake). Prompts longer than
    ``max_prompt_tokens`` keep their last tokens (the answers and the question to the judge).
    """

    def __init__(
        self,
        model,
        tokenizer,
        max_new_tokens: int = 8,
        batch_size: int = 8,
        max_prompt_tokens: int | None = None,
        generator=None,
        progress: bool = False,
    ):
        super().__init__(self._ask, name="llm")
        from chatglm_rlhf.models.generation import GenerationSettings, make_generator

        self.tokenizer = tokenizer
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens, greedy=True, batch_size=batch_size)
        self.generator = generator or make_generator(model, tokenizer, self.settings, progress=progress)
        self.max_prompt_tokens = max_prompt_tokens
        self.raw_replies: list[str] = []

    def _ask(self, samples: list[DialogueSample], first: list[str], second: list[str]) -> list[str | None]:
        from chatglm_rlhf.data.templates import encode_text, render
        from chatglm_rlhf.models.generation import decode_response

        prompts = []
        for s, x, y in zip(samples, first, second):
            text = render(self.tokenizer, judge_messages(s, x, y), add_generation_prompt=True)
            ids = encode_text(self.tokenizer, text)
            if self.max_prompt_tokens and len(ids) > self.max_prompt_tokens:
                ids = ids[-self.max_prompt_tokens :]
            prompts.append(ids)
        gens = self.generator.generate(prompts, 1, self.settings, seed=0)
        replies = [decode_response(self.tokenizer, g[0]) for g in gens]
        self.raw_replies.extend(replies)
        return [parse_verdict(r) for r in replies]
