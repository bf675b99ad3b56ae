"""A small built-in capability probe: does RLHF make the model forget what it could do?

The paper adds a next-token (ptx) loss to PPO because alignment training can erode capabilities. Win rates
against the SFT model do not show that erosion, so we also ask 40 questions with checkable answers,
before and after training, with and without ptx:

* ``fact``: short world knowledge; correct if an accepted answer is mentioned *before* any listed
  wrong answer: the first mention decides ("Canberra, not Sydney" counts, "Sydney, or maybe
  Canberra" does not).
* ``arithmetic``: small integer sums; the first number in the reply that is not a number from the
  question must equal the result (so restating "7 + 5 = 12" is fine). Digits only: a spelled-out
  answer ("twelve") counts as wrong.
* ``json``: the reply must contain a parseable JSON value (code fences allowed) with the required keys
  and values: format following and content together.
* ``one_word``: after stripping markdown, quotes and end punctuation the reply is one word, and the right one.
* ``list``: exactly three items (bullet/numbered lines, else a comma/"and" list), distinct, each valid.

Checkers are lenient about form (case, punctuation, markdown, an intro line) but never accept a reply
that does not contain the answer. Every item's reply and the checker's reason are kept in the result.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.evaluate.refusal import refusal_hedge_rate

Check = Callable[[str], tuple[bool, str]]


@dataclass(frozen=True)
class ProbeItem:
    id: str
    kind: str  # fact | arithmetic | json | one_word | list
    question: str
    check: Check


# --------------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d])|(?<![\w.])-?\d+(?:\.\d+)?(?![\d])")
_BULLET = re.compile(r"^\s*(?:[-*•+]|\d+[.)]|\(\d+\))\s+(.+?)\s*$")
_MARKDOWN = re.compile(r"[*_`#]+")


def _numbers(text: str) -> list[float]:
    return [float(m.group().replace(",", "")) for m in _NUMBER.finditer(text)]


def _mention(text: str, phrase: str) -> int:
    """Position of ``phrase`` as a whole word/phrase (case-insensitive), or -1."""
    m = re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text, flags=re.IGNORECASE)
    return m.start() if m else -1


def _first_of(text: str, phrases: Sequence[str]) -> int:
    hits = [p for p in (_mention(text, x) for x in phrases) if p >= 0]
    return min(hits) if hits else -1


def _clean_word(text: str) -> str:
    text = _MARKDOWN.sub("", text).strip()
    return text.strip(" \t\n\"'“”‘’").rstrip(".!?,;:").strip(" \"'“”‘’")


def _list_items(text: str) -> list[str]:
    """Bullet or numbered lines if there are at least two, else the first line split on commas/and."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    bullets = [m.group(1) for m in (_BULLET.match(ln) for ln in lines) if m]
    if len(bullets) >= 2:
        return [_clean_word(b) for b in bullets]
    # The first line with text after any intro ("Here are three fruits:" alone, or before the list).
    bodies = [ln.split(":", 1)[1] if ":" in ln else ln for ln in lines]
    first = next((b for b in bodies if b.strip()), "")
    parts = re.split(r",|;|\band\b", first)
    return [w for w in (_clean_word(p) for p in parts) if w]


def _find_json(text: str) -> Any:
    """The first JSON object or array in ``text`` (after any code fence), or raise ValueError."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL | re.IGNORECASE)
    body = fenced.group(1) if fenced else text
    decoder = json.JSONDecoder()
    for i, ch in enumerate(body):
        if ch in "{[":
            try:
                return decoder.raw_decode(body[i:])[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("no parseable JSON object or array")


# --------------------------------------------------------------------------------------------------
# Checker factories
# --------------------------------------------------------------------------------------------------


def fact(accepted: Sequence[str], wrong: Sequence[str] = ()) -> Check:
    def check(reply: str) -> tuple[bool, str]:
        right, bad = _first_of(reply, accepted), _first_of(reply, wrong)
        if right < 0:
            return False, f"none of {list(accepted)} mentioned"
        if 0 <= bad < right:
            return False, "a wrong answer is mentioned first"
        return True, "accepted answer mentioned"

    return check


def arithmetic(expected: float, question: str) -> Check:
    operands = set(_numbers(question))

    def check(reply: str) -> tuple[bool, str]:
        others = [n for n in _numbers(reply) if n not in operands]
        if not others:
            return False, "no number other than the question's"
        if abs(others[0] - expected) > 1e-9:
            return False, f"first new number is {others[0]:g}, expected {expected:g}"
        return True, "correct result"

    return check


def _value_ok(value: Any, accepted: Sequence[Any]) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return any(isinstance(a, (int, float)) and abs(value - a) < 1e-9 for a in accepted)
    text = str(value).strip().strip(".").lower()
    return any(text == str(a).lower() or (isinstance(a, (int, float)) and text == f"{a:g}") for a in accepted)


def json_object(fields: dict[str, Sequence[Any] | None]) -> Check:
    """A JSON object with these keys; a key's accepted values, when given, must include its value."""

    def check(reply: str) -> tuple[bool, str]:
        try:
            data = _find_json(reply)
        except ValueError as e:
            return False, str(e)
        if not isinstance(data, dict):
            return False, "JSON is not an object"
        for key, accepted in fields.items():
            if key not in data:
                return False, f"key {key!r} missing"
            if accepted is not None and not _value_ok(data[key], accepted):
                return False, f"{key}={data[key]!r} not in {list(accepted)}"
        return True, "valid JSON with the required fields"

    return check


def json_list(expected: list[Any]) -> Check:
    def check(reply: str) -> tuple[bool, str]:
        try:
            data = _find_json(reply)
        except ValueError as e:
            return False, str(e)
        if data != expected:
            return False, f"got {data!r}, expected {expected!r}"
        return True, "valid JSON list with the expected values"

    return check


def one_word(accepted: Sequence[str]) -> Check:
    def check(reply: str) -> tuple[bool, str]:
        word = _clean_word(reply)
        if not word or len(word.split()) != 1:
            return False, f"not a single word: {word[:40]!r}"
        if word.lower() not in {a.lower() for a in accepted}:
            return False, f"{word!r} not in {list(accepted)}"
        return True, "one correct word"

    return check


def three_items(valid: Callable[[str], bool] | None = None, vocabulary: Sequence[str] = ()) -> Check:
    """Exactly three distinct items; each must pass ``valid`` or mention a word of ``vocabulary``."""
    vocab = [v.lower() for v in vocabulary]

    def ok(item: str) -> bool:
        if valid is not None:
            return valid(item)
        return not vocab or _first_of(item, vocab) >= 0

    def check(reply: str) -> tuple[bool, str]:
        items = _list_items(reply)
        if len(items) != 3:
            return False, f"{len(items)} items, expected 3"
        if len({i.lower() for i in items}) != 3:
            return False, "items repeat"
        bad = [i for i in items if not ok(i)]
        return (False, f"invalid items {bad}") if bad else (True, "three valid items")

    return check


# --------------------------------------------------------------------------------------------------
# The probe
# --------------------------------------------------------------------------------------------------


def _arith(i: int, question: str, expected: float) -> ProbeItem:
    return ProbeItem(f"arith{i}", "arithmetic", question, arithmetic(expected, question))


def _rhymes_with_cat(item: str) -> bool:
    word = item.lower()
    return len(word.split()) == 1 and word.endswith("at") and word != "cat"


_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# fmt: off
PROBE: tuple[ProbeItem, ...] = (
    ProbeItem("fact1", "fact", "What is the capital of France?", fact(["Paris"], ["London", "Lyon", "Marseille"])),
    ProbeItem("fact2", "fact", "What is the capital of Japan?", fact(["Tokyo"], ["Kyoto", "Osaka"])),
    ProbeItem("fact3", "fact", "What is the capital of Italy?", fact(["Rome"], ["Milan", "Venice", "Naples"])),
    ProbeItem("fact4", "fact", "What is the capital of Australia?", fact(["Canberra"], ["Sydney", "Melbourne"])),
    ProbeItem("fact5", "fact", "How many days are there in a week?", fact(["7", "seven"], ["5", "6", "8", "five", "six", "eight"])),
    ProbeItem("fact6", "fact", "What is the largest planet in our solar system?", fact(["Jupiter"], ["Saturn", "Earth", "Neptune"])),
    ProbeItem("fact7", "fact", "What is the chemical formula of water?", fact(["H2O", "H₂O"], ["CO2", "H2O2"])),
    ProbeItem("fact8", "fact", "Who wrote the play Romeo and Juliet?", fact(["Shakespeare"], ["Marlowe", "Dickens"])),
    ProbeItem("fact9", "fact", "At how many degrees Celsius does water freeze?", fact(["0", "zero"], ["32", "100"])),
    ProbeItem("fact10", "fact", "Which gas do plants take in from the air for photosynthesis?", fact(["carbon dioxide", "CO2", "CO₂"], ["oxygen", "nitrogen"])),
    ProbeItem("fact11", "fact", "How many continents are there on Earth?", fact(["7", "seven"], ["5", "6", "8", "five", "six"])),
    ProbeItem("fact12", "fact", "What is the largest ocean on Earth?", fact(["Pacific"], ["Atlantic", "Indian", "Arctic"])),
    ProbeItem("fact13", "fact", "Which planet is known as the Red Planet?", fact(["Mars"], ["Venus", "Jupiter"])),
    ProbeItem("fact14", "fact", "What language is mainly spoken in Brazil?", fact(["Portuguese"], ["Spanish", "Brazilian"])),
    _arith(1, "What is 7 + 5?", 12),
    _arith(2, "What is 9 * 8?", 72),
    _arith(3, "What is 100 - 37?", 63),
    _arith(4, "What is 156 divided by 12?", 13),
    _arith(5, "What is 15 + 27?", 42),
    _arith(6, "What is 6 times 7?", 42),
    _arith(7, "What is 25 multiplied by 4?", 100),
    _arith(8, "What is 2 + 3 * 4?", 14),
    _arith(9, "What is half of 50?", 25),
    ProbeItem("json1", "json", 'Answer in JSON with the key "capital": what is the capital of Spain?', json_object({"capital": ["Madrid"]})),
    ProbeItem("json2", "json", 'Write a JSON object with the keys "name" and "age" for a person called Alice who is 30 years old.', json_object({"name": ["Alice"], "age": [30]})),
    ProbeItem("json3", "json", 'Reply with a JSON object whose key "color" holds the colour of grass.', json_object({"color": ["green"]})),
    ProbeItem("json4", "json", 'Answer in JSON with the key "answer": what is 3 + 4?', json_object({"answer": [7]})),
    ProbeItem("json5", "json", "Output a JSON array of the first three positive even numbers.", json_list([2, 4, 6])),
    ProbeItem("json6", "json", 'Give a JSON object with a key "animals" whose value is a list of two animals.', json_object({"animals": None})),
    ProbeItem("word1", "one_word", "Reply with one word only: what colour is a ripe banana?", one_word(["yellow"])),
    ProbeItem("word2", "one_word", "Answer with a single word: what is the opposite of hot?", one_word(["cold"])),
    ProbeItem("word3", "one_word", "In one word, which animal says meow?", one_word(["cat", "cats", "kitten"])),
    ProbeItem("word4", "one_word", "One word only: what do we call frozen water?", one_word(["ice"])),
    ProbeItem("word5", "one_word", "Reply in one word: what is the capital of Germany?", one_word(["Berlin"])),
    ProbeItem("word6", "one_word", "Respond with exactly one word, yes or no: is the Sun a star?", one_word(["yes"])),
    ProbeItem("list1", "list", "List three primary colours of paint.", three_items(vocabulary=["red", "blue", "yellow"])),
    ProbeItem("list2", "list", "List three days of the week.", three_items(vocabulary=_DAYS)),
    ProbeItem("list3", "list", "Name the three states of matter taught in school.", three_items(vocabulary=["solid", "liquid", "gas"])),
    ProbeItem("list4", "list", "Write three words that rhyme with cat.", three_items(valid=_rhymes_with_cat)),
    ProbeItem("list5", "list", "List three fruits, separated by commas.", three_items()),
)
# fmt: on


def _aligned(responses: Sequence[str] | dict[str, str], items: Sequence[ProbeItem]) -> list[str]:
    if isinstance(responses, dict):
        missing = [it.id for it in items if it.id not in responses]
        if missing:
            raise UserError(f"capability probe: no response for item(s) {missing[:5]}")
        return [responses[it.id] for it in items]
    if len(responses) != len(items):
        raise UserError(f"capability probe: {len(responses)} responses for {len(items)} questions")
    return list(responses)


def score_probe(
    responses: Sequence[str] | dict[str, str], items: Sequence[ProbeItem] = PROBE
) -> dict[str, Any]:
    """Score replies (a list in ``items`` order, or a dict by item id).

    Returns ``overall`` (share of items correct), ``macro`` (mean of the per-kind accuracies, so the
    14 facts do not outweigh the 5 lists), ``by_kind`` ({kind: {correct, total, accuracy}}), ``by_split``
    (dev / test accuracy), ``refusal_hedge_rate`` (refusals and hedges on the ``benign`` items; None without
    them) and ``items`` (id, kind, question, response, correct, reason) for reading the replies.
    """
    replies = _aligned(responses, items)
    rows, by_kind = [], {}
    for item, reply in zip(items, replies):
        ok, reason = item.check(reply)
        rows.append(
            dict(
                id=item.id, kind=item.kind, question=item.question, response=reply, correct=ok, reason=reason
            )
        )
        k = by_kind.setdefault(item.kind, {"correct": 0, "total": 0})
        k["correct"] += int(ok)
        k["total"] += 1
    for k in by_kind.values():
        k["accuracy"] = k["correct"] / k["total"]
    n = len(rows)
    by_split = {}
    for split in ("dev", "test"):
        mine = [r["correct"] for r in rows if split_of(r["id"]) == split]
        by_split[split] = sum(mine) / len(mine) if mine else None
    benign = [r["response"] for r in rows if r["kind"] == "benign"]
    return {
        "overall": sum(r["correct"] for r in rows) / n if n else 0.0,
        "macro": sum(k["accuracy"] for k in by_kind.values()) / len(by_kind) if by_kind else 0.0,
        "correct": sum(r["correct"] for r in rows),
        "total": n,
        "by_kind": by_kind,
        "by_split": by_split,
        # Refusals and hedges on requests that are plainly benign: evasiveness (evaluate/refusal.py).
        "refusal_hedge_rate": refusal_hedge_rate(benign),
        "items": rows,
    }


def split_of(item_id: str) -> str:
    """``dev`` for one item in four (stable: a hash of the id; settings may be chosen on these), else
    ``test`` (reported, never tuned on)."""
    return "dev" if hashlib.sha1(item_id.encode()).digest()[0] % 4 == 0 else "test"


def run_probe(model, tokenizer, settings=None, items: Sequence[ProbeItem] = PROBE) -> dict[str, Any]:
    """Ask every probe question (single turn, the model's chat template) and score the greedy replies.

    ``settings`` (a :class:`~chatglm_rlhf.models.generation.GenerationSettings`) gives max_new_tokens
    and batch_size; decoding is always greedy, so a before/after difference is the model's, not the
    sampler's. Replies cut at max_new_tokens are still scored (``items[i]["finished"]`` says which).
    """
    from chatglm_rlhf.data.schema import DialogueSample
    from chatglm_rlhf.data.templates import prompt_ids
    from chatglm_rlhf.models.generation import GenerationSettings, decode_response, make_generator

    settings = replace(settings or GenerationSettings(max_new_tokens=48, batch_size=16), greedy=True)
    prompts = [prompt_ids(tokenizer, DialogueSample(id=it.id, prompt=it.question))[0] for it in items]
    generated = make_generator(model, tokenizer, settings).generate(prompts, 1, settings)
    replies = [decode_response(tokenizer, g[0]) for g in generated]
    result = score_probe(replies, items)
    for row, g in zip(result["items"], generated):
        row["finished"] = g[0].finished
    result["max_new_tokens"] = settings.max_new_tokens
    return result
