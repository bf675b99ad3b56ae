"""Tokenisation shared by SFT, reward modelling, PPO and DPO.

**Rendering.** A dialogue is rendered with the tokenizer's own chat template when it has one. Otherwise
:data:`FALLBACK_TEMPLATE` is used: a plain-text, ChatGLM3-style layout in which every turn starts with
its role marker and a newline, and every assistant turn ends with the tokenizer's eos token::

    <|system|>\\n{system}<|user|>\\n{question}<|assistant|>\\n{answer}<eos><|user|>\\n{prompt}<|assistant|>\\n

With the generation prompt the text ends with ``<|assistant|>\\n``, ready for the reply. The tiny test
tokenizer (:mod:`chatglm_rlhf.models.tiny`) ships this same template, with the role markers as single
special tokens; for other tokenizers they are ordinary text.

**Sequences.** A training sequence is ``prompt_ids + response_ids``: the history and prompt rendered with
the generation prompt, then the bare response tokens and eos. Building it from two separately tokenised
parts (rather than tokenising the full rendering) makes the prompt/response boundary exact, which loss
masking (SFT) and per-token log-probs (PPO/DPO) rely on. For templates whose assistant turn is
``{content}<eos>`` (the fallback, the tiny tokenizer, ChatML-style templates whose eos is the end-of-turn
token) this equals the tokenisation of the full rendering, except when BPE would merge across the
boundary: e.g. a response that starts with two or more whitespace characters after the header's newline.

**Truncation.** Too-long prompts lose their oldest history first, one whole exchange (a user turn and the
replies after it) at a time; leading system turns are kept. What was dropped is reported per sample
(``history_dropped``) and summed in :data:`truncation_counts`. Responses are never cut unless the caller
asks, and a sample that cannot fit raises :class:`TruncationError` instead of being dropped silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from chatglm_rlhf.data.schema import DialogueSample, Turn
from chatglm_rlhf.errors import UserError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label value that torch's cross-entropy skips

# No whitespace-control dashes: the only whitespace is the deliberate newline after each role marker.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token or '' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Process-wide tallies so a training run can report how much truncation happened. Keys:
# "history_turns_dropped", "samples_with_history_dropped", "prompts_left_truncated", "responses_truncated".
truncation_counts: Counter[str] = Counter()


def reset_truncation_counts() -> None:
    truncation_counts.clear()


class TruncationError(UserError, ValueError):
    """A sample cannot fit ``max_length`` without cutting its response; the message names the sample."""


@dataclass
class Encoded:
    """One tokenised sequence: ``input_ids[:prompt_len]`` is the prompt, the rest the response."""

    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on the prompt, the token ids on the response
    prompt_len: int
    history_dropped: int  # history turns dropped to fit
    response_truncated: bool  # the response lost its end (and its eos)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """The dialogue as text, via the tokenizer's chat template or :data:`FALLBACK_TEMPLATE`."""
    template = None if has_chat_template(tokenizer) else FALLBACK_TEMPLATE
    return tokenizer.apply_chat_template(
        messages, chat_template=template, add_generation_prompt=add_generation_prompt, tokenize=False
    )


def encode_text(tokenizer, text: str) -> list[int]:
    # Templates write their own bos/role tokens, so the tokenizer must not add any (as apply_chat_template).
    return list(tokenizer.encode(text, add_special_tokens=False))


def _messages(system: list[Turn], exchanges: list[list[Turn]], prompt: str) -> list[dict[str, str]]:
    turns = system + [t for ex in exchanges for t in ex]
    return [{"role": t.role, "content": t.content} for t in turns] + [{"role": "user", "content": prompt}]


def split_history(history: list[Turn]) -> tuple[list[Turn], list[list[Turn]]]:
    """(leading system turns, exchanges): each exchange starts at a user turn and holds the turns after it."""
    n_sys = 0
    while n_sys < len(history) and history[n_sys].role == "system":
        n_sys += 1
    exchanges: list[list[Turn]] = []
    for turn in history[n_sys:]:
        if turn.role == "user" or not exchanges:
            exchanges.append([])
        exchanges[-1].append(turn)
    return history[:n_sys], exchanges


def _fit_prompt(tokenizer, sample: DialogueSample, budget: int) -> tuple[list[int], int, bool]:
    """Prompt ids with the fewest oldest exchanges dropped to fit ``budget`` tokens.

    Returns (ids, history turns dropped, fits). When nothing fits, ids are those of the bare prompt
    (system turns + prompt) and fits is False.
    """
    system, exchanges = split_history(sample.history)
    dropped = 0
    for k in range(len(exchanges) + 1):
        msgs = _messages(system, exchanges[k:], sample.prompt)
        ids = encode_text(tokenizer, render(tokenizer, msgs, add_generation_prompt=True))
        if len(ids) <= budget:
            return ids, dropped, True
        if k < len(exchanges):
            dropped += len(exchanges[k])
    return ids, dropped, False


def _count_dropped(sample: DialogueSample, dropped: int) -> None:
    if dropped:
        truncation_counts["history_turns_dropped"] += dropped
        truncation_counts["samples_with_history_dropped"] += 1
        log.debug("sample %r: dropped %d oldest history turns", sample.id, dropped)


def prompt_ids(
    tokenizer, sample: DialogueSample, max_prompt_tokens: int | None = None
) -> tuple[list[int], int]:
    """Ids of history + prompt + generation prompt, and the number of history turns dropped to fit.

    If even the bare prompt exceeds ``max_prompt_tokens``, its last tokens are kept (the end of the
    question and the assistant header matter most for generation) and
    ``truncation_counts["prompts_left_truncated"]`` is incremented.
    """
    if max_prompt_tokens is None:
        ids = encode_text(tokenizer, render(tokenizer, sample.messages(), add_generation_prompt=True))
        return ids, 0
    ids, dropped, fits = _fit_prompt(tokenizer, sample, max_prompt_tokens)
    _count_dropped(sample, dropped)
    if not fits:
        truncation_counts["prompts_left_truncated"] += 1
        log.warning(
            "sample %r: prompt has %d tokens even without history; kept its last %d",
            sample.id,
            len(ids),
            max_prompt_tokens,
        )
        ids = ids[-max_prompt_tokens:] if max_prompt_tokens > 0 else []
    return ids, dropped


def response_ids(tokenizer, response: str, add_eos: bool = True) -> list[int]:
    """The bare response tokens (no template prefix), then eos: the suffix of a training sequence."""
    ids = encode_text(tokenizer, response)
    if add_eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token; a response cannot be terminated")
        ids.append(tokenizer.eos_token_id)
    return ids


def _encoded(prompt: list[int], response: list[int], dropped: int, truncated: bool) -> Encoded:
    return Encoded(
        input_ids=prompt + response,
        labels=[IGNORE_INDEX] * len(prompt) + response,
        prompt_len=len(prompt),
        history_dropped=dropped,
        response_truncated=truncated,
    )


def _cannot_fit(
    sample: DialogueSample, prompt_len: int, response_len: int, max_length: int
) -> TruncationError:
    return TruncationError(
        f"sample {sample.id!r}: the prompt needs {prompt_len} tokens even with all history dropped and the "
        f"response {response_len} (incl. eos), over max_length={max_length}; raise max_length, filter the "
        "sample, or allow truncate_response"
    )


def encode_sft(
    tokenizer, sample: DialogueSample, response: str, max_length: int, truncate_response: bool = False
) -> Encoded:
    """``prompt_ids + response_ids`` with the prompt masked out of the labels, fitted to ``max_length``.

    Oldest history goes first. Only then, and only with ``truncate_response``, is the response's end cut
    (a cut response carries no eos: the model must not learn to stop there). Otherwise
    :class:`TruncationError`.
    """
    resp = response_ids(tokenizer, response)
    ids, dropped, fits = _fit_prompt(tokenizer, sample, max_length - len(resp))
    _count_dropped(sample, dropped)
    if fits:
        return _encoded(ids, resp, dropped, False)
    if not truncate_response or len(ids) >= max_length:
        raise _cannot_fit(sample, len(ids), len(resp), max_length)
    truncation_counts["responses_truncated"] += 1
    return _encoded(ids, resp[: max_length - len(ids)], dropped, True)


def encode_pair(
    tokenizer,
    sample: DialogueSample,
    chosen: str,
    rejected: str,
    max_length: int,
    truncate_response: bool = False,
) -> tuple[Encoded, Encoded]:
    """Chosen and rejected sequences that share one prompt, fitted for the longer response."""
    rc, rr = response_ids(tokenizer, chosen), response_ids(tokenizer, rejected)
    ids, dropped, fits = _fit_prompt(tokenizer, sample, max_length - max(len(rc), len(rr)))
    _count_dropped(sample, dropped)
    if fits:
        return _encoded(ids, rc, dropped, False), _encoded(ids, rr, dropped, False)
    if not truncate_response or len(ids) >= max_length:
        raise _cannot_fit(sample, len(ids), max(len(rc), len(rr)), max_length)
    room = max_length - len(ids)
    out = []
    for resp in (rc, rr):
        cut = len(resp) > room
        truncation_counts["responses_truncated"] += int(cut)
        out.append(_encoded(ids, resp[:room], dropped, cut))
    return out[0], out[1]
