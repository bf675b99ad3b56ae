"""SFT demonstrations of mixed quality, and responses of a chosen quality for any demo sample.

The default mixture deliberately leaves room for RLHF: only ~45% of demonstrations are good
(``good`` + ``good_filler``), so an SFT model that imitates the mixture answers well only part of the
time when sampled, and a policy that learns to prefer the good modes clearly beats it on the gold judge.

Provenance: :func:`make_sft_data` returns :class:`Demonstration` named tuples ``(sample, response,
mode)``; ``Demonstration.to_sample()`` gives a copy of the sample with ``responses=[response]`` and
``meta["mode"]`` set, ready to be written as a JSONL record.
"""

from __future__ import annotations

import copy
import random
from typing import Any, NamedTuple

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.tasks.demo import world as W

RESPONSE_MODES: dict[str, str] = {
    "good": "correct and concise; for a harmful prompt, a polite refusal",
    "good_filler": "a good answer plus polite filler: longer, but a gold tie with 'good'",
    "wrong": "plausible but incorrect: off-by-one number, wrong fact, wrong item count or item; "
    "for a harmful prompt an evasive non-answer",
    "comply": "complies with a harmful request (vague steps); on a benign prompt the same as 'good'",
    "repetitive": "correct-ish answer that repeats itself (the whole answer, or 'As I said, ...')",
    "broken": "a good answer cut off mid-word, or garbled with junk characters",
    "refuse": "a refusal: an unhelpful over-refusal on a benign prompt, the same as 'good' on a harmful one",
}

_BENIGN_MIX = {
    "good": 0.30,
    "good_filler": 0.15,
    "wrong": 0.30,
    "repetitive": 0.10,
    "broken": 0.10,
    "refuse": 0.05,
}
DEFAULT_MIX: dict[str, dict[str, float]] = {
    "arithmetic": dict(_BENIGN_MIX),
    "format": dict(_BENIGN_MIX),
    "facts": dict(_BENIGN_MIX),
    # ~55% refusals (good, good_filler, and the repetitive/broken refusals) vs 45% compliance.
    "harmful": {"good": 0.30, "good_filler": 0.15, "comply": 0.45, "repetitive": 0.05, "broken": 0.05},
}
GOOD_MODES = ("good", "good_filler")
_JUNK = "#@%&~^$|"


class Demonstration(NamedTuple):
    """One SFT example: the prompt sample, the response text and the mode that produced it."""

    sample: DialogueSample
    response: str
    mode: str

    def to_sample(self) -> DialogueSample:
        s = copy.deepcopy(self.sample)
        s.responses = [self.response]
        s.meta["mode"] = self.mode
        return s


# --- the modes ---------------------------------------------------------------------------------------


def _gold(sample: DialogueSample) -> dict[str, Any]:
    gold = sample.meta.get("gold")
    if not isinstance(gold, dict) or sample.category not in W.CATEGORIES:
        raise ValueError(f"sample {sample.id!r} is not a demo-world sample (no meta['gold'] / category)")
    return gold


def _arith(gold: dict[str, Any], c: int, variant: int) -> str:
    return W.ARITH_ANSWERS[variant].format(a=gold["a"], sym=gold["op"], b=gold["b"], c=c)


def _list_answer(gold: dict[str, Any], items: list[str], variant: int) -> str:
    if variant == 0:
        return W.FORMAT_ANSWERS[0].format(items=W.format_list(items))
    nw = W.NUMBER_WORDS.get(len(items), str(len(items)))
    return W.FORMAT_ANSWERS[1].format(n=nw, cat=gold["item_category"], items=", ".join(items))


def _good(sample: DialogueSample, rng: random.Random) -> str:
    gold = _gold(sample)
    if sample.category == "arithmetic":
        return _arith(gold, gold["answer"], rng.randrange(len(W.ARITH_ANSWERS)))
    if sample.category == "format":
        items = rng.sample(gold["items"], gold["count"])
        return _list_answer(gold, items, rng.randrange(len(W.FORMAT_ANSWERS)))
    if sample.category == "facts":
        variant = rng.randrange(len(W.FACT_ANSWERS[gold["relation"]]))
        return W.fact_answer(gold["relation"], gold["subject"], gold["answer"], variant)
    return rng.choice(W.REFUSALS)


def _good_filler(sample: DialogueSample, rng: random.Random) -> str:
    good = _good(sample, rng)
    if sample.category == "harmful":  # "Sure!" before a refusal would read as compliance
        return good + rng.choice(W.HARMFUL_FILLER_SUFFIXES)
    prefix = rng.choice(W.FILLER_PREFIXES) if rng.random() < 0.7 else ""
    return prefix + good + rng.choice(W.FILLER_SUFFIXES)


def _wrong(sample: DialogueSample, rng: random.Random) -> str:
    gold = _gold(sample)
    if sample.category == "arithmetic":
        c = gold["answer"] + rng.choice((-2, -1, 1, 2))
        c = c if c >= 0 else gold["answer"] + 1
        return _arith(gold, c, rng.randrange(len(W.ARITH_ANSWERS)))
    if sample.category == "format":
        return _wrong_list(gold, rng)
    if sample.category == "facts":
        variant = rng.randrange(len(W.FACT_ANSWERS[gold["relation"]]))
        return W.fact_answer(gold["relation"], gold["subject"], rng.choice(gold["distractors"]), variant)
    return rng.choice(W.EVASIONS)


def _wrong_list(gold: dict[str, Any], rng: random.Random) -> str:
    n = gold["count"]
    if rng.random() < 0.5:  # wrong count
        n = n + 1 if n <= 2 or rng.random() < 0.5 else n - 1
        items = rng.sample(gold["items"], min(n, len(gold["items"])))
    else:  # one item from another category
        items = rng.sample(gold["items"], n)
        others = [w for c, ws in W.ITEMS.items() if c != gold["item_category"] for w in ws]
        items[rng.randrange(n)] = rng.choice(others)
    return _list_answer(gold, items, rng.randrange(len(W.FORMAT_ANSWERS)))


def _comply(sample: DialogueSample, rng: random.Random) -> str:
    if sample.category != "harmful":
        return _good(sample, rng)
    first = rng.choice([s for s in W.COMPLY_STEPS if s.startswith("First")])
    then = rng.choice([s for s in W.COMPLY_STEPS if s.startswith("Then")])
    return f"{rng.choice(W.COMPLY_OPENERS)} {first} {then}"


def _repetitive(sample: DialogueSample, rng: random.Random) -> str:
    base = _good(sample, rng)
    extra = 1 if len(base.split()) > 8 else rng.choice((1, 2))  # keep responses under 30 words
    if rng.random() < 0.5:
        return " ".join([base] * (1 + extra))
    tail = base if base.startswith("I ") else base[0].lower() + base[1:]
    ramble = rng.sample(W.RAMBLE, extra)
    return " ".join([base, *(r + tail for r in ramble)])


def _truncate(text: str, rng: random.Random) -> str:
    # Cut inside a word (both neighbours alphanumeric) so the result is visibly unfinished.
    cuts = [p for p in range(2, len(text) - 1) if text[p - 1].isalnum() and text[p].isalnum()]
    return text[: rng.choice(cuts)] if cuts else text[: max(1, len(text) // 2)]


def _garble(text: str, rng: random.Random) -> str:
    chars = list(text)
    spots = [i for i, ch in enumerate(chars) if not ch.isspace()]
    for i in rng.sample(spots, max(2, len(spots) // 4)):
        chars[i] = rng.choice(_JUNK)
    return "".join(chars)


def _broken(sample: DialogueSample, rng: random.Random) -> str:
    base = _good(sample, rng) if rng.random() < 0.7 else _good_filler(sample, rng)
    return _truncate(base, rng) if rng.random() < 0.5 else _garble(base, rng)


def _refuse(sample: DialogueSample, rng: random.Random) -> str:
    return rng.choice(W.REFUSALS)


_MODE_FNS = {
    "good": _good,
    "good_filler": _good_filler,
    "wrong": _wrong,
    "comply": _comply,
    "repetitive": _repetitive,
    "broken": _broken,
    "refuse": _refuse,
}


def response_for(sample: DialogueSample, mode: str, rng: random.Random) -> str:
    """A response of ``mode`` (a key of :data:`RESPONSE_MODES`) to a demo-world sample."""
    if mode not in _MODE_FNS:
        raise ValueError(f"unknown mode {mode!r}; expected one of {list(RESPONSE_MODES)}")
    return _MODE_FNS[mode](sample, rng)


# --- mixtures ----------------------------------------------------------------------------------------


def resolve_mix(mix: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Per-category mode weights. ``mix`` may be per-category (missing categories keep the default) or
    one flat ``{mode: weight}`` applied to every category."""
    if mix is None:
        return {c: dict(m) for c, m in DEFAULT_MIX.items()}
    if all(isinstance(v, (int, float)) for v in mix.values()):
        out = {c: dict(mix) for c in W.CATEGORIES}
    else:
        out = {c: dict(mix.get(c, DEFAULT_MIX[c])) for c in W.CATEGORIES}
        extra = set(mix) - set(W.CATEGORIES)
        if extra:
            raise ValueError(f"unknown categories in mix: {sorted(extra)}")
    for cat, weights in out.items():
        bad = set(weights) - set(RESPONSE_MODES)
        if bad or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"bad mix for {cat!r}: {weights} (modes: {list(RESPONSE_MODES)})")
    return out


def expected_mode_shares(
    mix: dict[str, Any] | None = None, category_weights: dict[str, float] | None = None
) -> dict[str, float]:
    """Overall share of each mode implied by a mix and the world's category weights."""
    per_cat = resolve_mix(mix)
    cw = category_weights or W.DEFAULT_CATEGORY_WEIGHTS
    total_cw = sum(cw.values())
    shares = dict.fromkeys(RESPONSE_MODES, 0.0)
    for cat, w in cw.items():
        norm = sum(per_cat[cat].values())
        for mode, mw in per_cat[cat].items():
            shares[mode] += (w / total_cw) * (mw / norm)
    return shares


def make_sft_data(
    world: W.DemoWorld, n: int, seed: int = 0, mix: dict[str, Any] | None = None
) -> list[Demonstration]:
    """``n`` demonstrations on the world's ``sft`` prompts, each mode drawn from the category's mix."""
    per_cat = resolve_mix(mix)
    rng = random.Random(f"demo-sft|{world.seed}|{seed}")
    out = []
    for sample in world.prompts("sft", n):
        weights = per_cat[sample.category]
        mode = rng.choices(list(weights), list(weights.values()))[0]
        out.append(Demonstration(sample, response_for(sample, mode, rng), mode))
    return out
