"""Token sequences the reward model scores, built with the RM's own tokenizer via :mod:`data.templates`.

A sequence is ``prefix + prompt_ids(history + prompt) + response tokens + suffix``:

* decoder tokenizers (they have an eos token): no prefix, suffix ``[eos]``; the model scores the last
  non-pad token, i.e. the eos that closes the response.
* encoder tokenizers (BERT-like, no eos): prefix ``[CLS]``, suffix ``[SEP]``; the model pools ``[CLS]``.
  Without a chat template the fallback template renders the dialogue as plain text.

Too-long inputs lose their oldest history first, then the start of the prompt (``prompt_ids`` keeps the
end of the question); the response is cut only if it alone leaves less than a quarter of ``max_length``
for the context, and then its end is cut but the suffix kept, so the scored position stays the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.data.templates import encode_text, prompt_ids, truncation_counts


@dataclass(frozen=True)
class Specials:
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    encoder: bool


def specials(tokenizer) -> Specials:
    """Which tokens wrap a sequence for this tokenizer (see module docstring)."""
    if tokenizer.eos_token_id is not None:
        return Specials((), (tokenizer.eos_token_id,), encoder=False)
    cls_id = getattr(tokenizer, "cls_token_id", None)
    sep_id = getattr(tokenizer, "sep_token_id", None)
    if cls_id is None and sep_id is None:
        raise ValueError("the RM tokenizer has neither an eos token nor [CLS]/[SEP]: cannot mark the end")
    return Specials(
        (cls_id,) if cls_id is not None else (), (sep_id,) if sep_id is not None else (), encoder=True
    )


def encode_for_rm(tokenizer, sample: DialogueSample, response: str, max_length: int) -> list[int]:
    """The ids the RM scores for ``response`` to ``sample``, at most ``max_length`` long."""
    sp = specials(tokenizer)
    room = max_length - len(sp.prefix) - len(sp.suffix)
    if room < 2:
        raise ValueError(f"max_length={max_length} leaves no room for a prompt and a response")
    resp = encode_text(tokenizer, response)
    full, _ = prompt_ids(tokenizer, sample)
    if len(full) + len(resp) <= room:
        return [*sp.prefix, *full, *resp, *sp.suffix]
    reserve = max(1, min(len(full), room // 4))
    if len(resp) > room - reserve:
        resp = resp[: room - reserve]
        truncation_counts["rm_responses_truncated"] += 1
    ids, _ = prompt_ids(tokenizer, sample, max_prompt_tokens=room - len(resp))
    return [*sp.prefix, *ids, *resp, *sp.suffix]


def response_length(tokenizer, response: str) -> int:
    """Length of a response in the RM tokenizer's tokens (the unit of the eval report's buckets)."""
    return len(encode_text(tokenizer, response))


@contextmanager
def truncation_summary(what: str, level: int = logging.WARNING) -> Iterator[None]:
    """Silence per-sample truncation warnings inside; log one summary line with the counts instead."""
    templates_log = logging.getLogger("chatglm_rlhf.data.templates")
    saved = templates_log.level  # not ``level``: that is the summary's level, the caller's choice
    before = dict(truncation_counts)
    templates_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        templates_log.setLevel(saved)
    diff = {k: v - before.get(k, 0) for k, v in truncation_counts.items() if v != before.get(k, 0)}
    if diff:
        logging.getLogger(__name__).log(level, "%s: truncated to fit max_length: %s", what, diff)
