"""SFT demonstrations with *systematic* flaws, and responses of a chosen mode for any demo sample.

Demonstrations are written by average writers: in each RL family, 65% of them (``FLAW_RATE``) show the
same bad pattern (:data:`FLAWS`), which greedy decoding of an SFT model picks; the rest are good, which
sampling finds. Raters see the flaw side by side, so RLHF can remove it. Polite filler goes on good and
flawed answers alike (``FILLER_RATE``), so it predicts nothing. Knowledge families (arithmetic, facts)
are always correct: they are what the capability probe asks about, never RL prompts.

``ptx`` data (:func:`make_ptx_data`) are clean demonstrations: the good mode on the train pool.
"""

from __future__ import annotations

import copy
import random
from typing import Any, NamedTuple

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.tasks.demo import world as W

FLAW_RATE = 0.65
FILLER_RATE = 0.3
FLAWS: dict[str, str] = {
    "count": "names one item twice (the asked number of items, one repeated)",
    "one_word": 'hedges with two items ("Cat, fox.") instead of one word',
    "end_mark": "ends with a full stop instead of the asked exclamation mark",
    "lookalike": "refuses a benign request because of an alarming word",
    "harmful": "complies with the harmful request (a vague first step)",
}
RESPONSE_MODES = {"good": "correct, the constraint met; a polite refusal for a harmful request",
                  "flaw": "the family's systematic flaw (FLAWS)", "refuse": "a refusal, whatever the prompt",
                  "comply": "vague compliance steps, whatever the prompt"}  # fmt: skip


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


def _gold(sample: DialogueSample) -> dict[str, Any]:
    gold = sample.meta.get("gold")
    if not isinstance(gold, dict) or sample.category not in W.CATEGORIES:
        raise ValueError(f"sample {sample.id!r} is not a demo-world sample (no meta['gold'] / category)")
    return gold


def _good(sample: DialogueSample, rng: random.Random) -> str:
    g, cat = _gold(sample), sample.category
    if cat == "count":
        return W.format_list(rng.sample(g["items"], g["count"]))
    if cat == "one_word":
        return rng.choice(g["items"]).capitalize() + "."
    if cat == "end_mark":
        return rng.choice(g["items"]).capitalize() + "!"
    if cat in ("lookalike", "arithmetic", "facts"):
        return g["reference"]
    return rng.choice(W.REFUSALS)


def _comply(rng: random.Random) -> str:
    # An opener and one step: about as many words as a refusal, so length does not give compliance away.
    return f"{rng.choice(W.COMPLY_OPENERS)} {rng.choice(W.COMPLY_STEPS)}"


def _flaw(sample: DialogueSample, rng: random.Random) -> str:
    g, cat = _gold(sample), sample.category
    if cat == "count":
        items = rng.sample(g["items"], g["count"] - 1)
        return W.format_list(items + [items[0]])
    if cat == "one_word":  # one word longer than the good answer: a (nearly) length-neutral flaw
        return W.format_list(rng.sample(g["items"], 2))
    if cat == "end_mark":
        return rng.choice(g["items"]).capitalize() + "."
    if cat == "lookalike":
        return rng.choice(W.REFUSALS)
    if cat == "harmful":
        return _comply(rng)
    return _good(sample, rng)  # knowledge: no flaw


def _filler(sample: DialogueSample, text: str, rng: random.Random) -> str:
    if sample.category in ("one_word", "end_mark"):  # filler would break the answer's constraint
        return text
    if sample.category == "harmful" and W.words_of(text)[:1] in (["sorry"], ["i"]):
        return text + rng.choice(W.HARMFUL_FILLER_SUFFIXES)  # "Sure!" before a refusal reads as consent
    return rng.choice(W.FILLER_PREFIXES) + text + rng.choice(W.FILLER_SUFFIXES)


def response_for(sample: DialogueSample, mode: str, rng: random.Random, filler: bool = False) -> str:
    """A response of ``mode`` (a key of :data:`RESPONSE_MODES`) to a demo-world sample."""
    if mode == "good":
        text = _good(sample, rng)
    elif mode == "flaw":
        text = _flaw(sample, rng)
    elif mode == "refuse":
        text = rng.choice(W.REFUSALS)
    elif mode == "comply":
        text = _comply(rng)
    else:
        raise ValueError(f"unknown mode {mode!r}; expected one of {list(RESPONSE_MODES)}")
    return _filler(sample, text, rng) if filler else text


def make_sft_data(
    world: W.DemoWorld, n: int, seed: int = 0, flaw_rate: float = FLAW_RATE
) -> list[Demonstration]:
    """``n`` demonstrations on the world's ``sft`` prompts: RL families flawed at ``flaw_rate``."""
    rng = random.Random(f"demo-sft|{seed}")
    out = []
    for sample in world.prompts("sft", n):
        flawed = sample.category in W.RL_CATEGORIES and rng.random() < flaw_rate
        mode = "flaw" if flawed else "good"
        out.append(Demonstration(sample, response_for(sample, mode, rng, rng.random() < FILLER_RATE), mode))
    return out


def make_ptx_data(world: W.DemoWorld, n: int, seed: int = 0) -> list[Demonstration]:
    """Clean demonstrations for PPO's ptx loss: good answers to the ``sft`` split's prompts."""
    rng = random.Random(f"demo-ptx|{seed}")
    return [Demonstration(s, response_for(s, "good", rng), "good") for s in world.prompts("sft", n)]


def tokenizer_corpus(world: W.DemoWorld, n: int) -> list[str]:
    """``n`` texts (about 1/3 prompts, 2/3 responses of every mode) to train a tokenizer on.

    Drawn from the train pool only, so even the tokenizer never sees a held-out prompt.
    """
    rng = random.Random(f"demo-corpus|{world.seed}")
    texts: list[str] = []
    for s in world.prompts("sft", max(1, (n + 2) // 3)):
        texts.append(s.prompt)
        texts += [
            response_for(s, rng.choice(list(RESPONSE_MODES)), rng, rng.random() < 0.5) for _ in range(2)
        ]
    return texts[:n]
