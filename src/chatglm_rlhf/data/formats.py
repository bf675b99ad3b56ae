"""Reading and writing preference data in our, TRL and Anthropic HH-RLHF formats.

Every format is converted to :class:`~chatglm_rlhf.data.schema.Comparison`. Readers go through
:func:`chatglm_rlhf.data.io.read_records`, so a line that cannot be converted is rejected with
``file:line: reason`` in the report instead of being dropped silently.

Formats (names returned by :func:`detect_format`):

``ours``
    ``Comparison.to_dict()`` JSONL.
``trl_standard``
    TRL standard preference with explicit prompt: ``{"prompt": str, "chosen": str, "rejected": str}``.
``trl_standard_implicit``
    ``{"chosen": str, "rejected": str}`` whose texts share the prompt as a common prefix.
``trl_conversational``
    ``{"prompt": [messages], "chosen": [assistant msg], "rejected": [assistant msg]}``.
``trl_conversational_implicit``
    ``{"chosen": [messages], "rejected": [messages]}`` sharing all messages but the last assistant one.
``hh``
    Anthropic HH-RLHF: ``{"chosen": transcript, "rejected": transcript}``; also used for implicit
    standard text that contains ``\\n\\nHuman:`` / ``\\n\\nAssistant:`` markers.

Text layout (:func:`history_to_text`): the HH layout. Each turn is ``"\\n\\n" + Speaker + ": " + content``
with Speaker ``Human`` (user), ``Assistant`` (assistant) or ``System`` (system, our extension), and the
prompt text ends with ``"\\n\\nAssistant:"``; a full transcript appends ``" " + response``. When read back,
each turn's content is stripped of surrounding whitespace (HH data has stray spaces), so text formats
carry contents up to surrounding whitespace; a content that itself contains a turn marker cannot be
written as text (:func:`to_trl` raises).

Every chosen/rejected pair is read as ``label="a"`` with ``response_a`` = chosen. Ties have no TRL
representation: :func:`write_trl` skips them and returns how many it skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import typing
from collections.abc import Iterable
from itertools import combinations
from typing import Any, Literal

from chatglm_rlhf.data.io import ReadReport, read_records, write_jsonl
from chatglm_rlhf.data.schema import ROLES, Comparison, DialogueSample, SchemaError, Turn

# The ``format=`` config key: "auto" (detect per record) or one of the formats; FORMATS derives from it.
InputFormat = Literal[
    "auto",
    "ours",
    "trl_standard",
    "trl_standard_implicit",
    "trl_conversational",
    "trl_conversational_implicit",
    "hh",
]
FORMATS = typing.get_args(InputFormat)[1:]

_SPEAKER_OF_ROLE = {"user": "Human", "assistant": "Assistant", "system": "System"}
_ROLE_OF_SPEAKER = {v: k for k, v in _SPEAKER_OF_ROLE.items()}
# A marker starts a turn only at the start of the text or after a blank line: HH turns often contain
# "Human:" mid-line (the model imitating the user), which must stay part of that turn's content.
_MARKER = re.compile(r"(?:\A|\n\n)(Human|Assistant|System):")
_INNER_MARKER = re.compile(r"\n\n(Human|Assistant|System):")
# TRL rows may carry scores; keep them in ``meta`` rather than losing them.
_EXTRA_META_KEYS = ("margin", "score_chosen", "score_rejected")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def stable_sample_id(history: list[Turn], prompt: str) -> str:
    """A stable id for a history + prompt (formats without ids still group pairs of one sample)."""
    key = json.dumps(
        {"history": [[t.role, t.content] for t in history], "prompt": prompt}, ensure_ascii=False
    )
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def _text_field(obj: dict, key: str) -> str:
    if key not in obj:
        raise SchemaError(f"missing field {key!r}")
    if not isinstance(obj[key], str):
        raise SchemaError(f"field {key!r} must be a string, got {type(obj[key]).__name__}")
    return obj[key]


def _messages_field(obj: dict, key: str) -> list[Turn]:
    if key not in obj:
        raise SchemaError(f"missing field {key!r}")
    value = obj[key]
    if not isinstance(value, list) or not value:
        raise SchemaError(f"field {key!r} must be a non-empty list of messages")
    turns = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise SchemaError(f"{key}[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise SchemaError(f"{key}[{i}].role must be one of {ROLES}, got {m['role']!r}")
        if not isinstance(m["content"], str):
            # TRL also allows multimodal content parts; we only handle text.
            raise SchemaError(f"{key}[{i}].content must be a string, got {type(m['content']).__name__}")
        turns.append(Turn(m["role"], m["content"]))
    return turns


def _split_prompt(prefix: list[Turn], where: str) -> tuple[list[Turn], str]:
    """Split shared turns into (history, prompt): the prompt is the last turn and must be a user turn."""
    if not prefix or prefix[-1].role != "user":
        raise SchemaError(f"{where}: the turn before the final response must be a user/Human turn")
    if not prefix[-1].content.strip():
        raise SchemaError(f"{where}: the prompt (last user turn) is empty")
    return prefix[:-1], prefix[-1].content


def _first_difference(a: list[Turn], b: list[Turn]) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def _pair(obj: dict, history: list[Turn], prompt: str, chosen: str, rejected: str) -> Comparison:
    """Build the Comparison for a chosen/rejected pair, keeping id/category/scores when given."""
    sample_id = obj.get("id")
    meta = {k: obj[k] for k in _EXTRA_META_KEYS if k in obj}
    return Comparison(
        sample_id=str(sample_id) if sample_id is not None else stable_sample_id(history, prompt),
        prompt=prompt,
        response_a=chosen,
        response_b=rejected,
        label="a",
        history=list(history),
        category=obj.get("category"),
        meta=meta,
    )


# --------------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------------


def detect_format(obj: dict) -> str:
    """Name the format of one JSON record (see module docstring); raises SchemaError if none fits."""
    if not isinstance(obj, dict):
        raise SchemaError("record must be a JSON object")
    if "response_a" in obj or "label" in obj:
        return "ours"
    if "chosen" not in obj or "rejected" not in obj:
        missing = [k for k in ("chosen", "rejected") if k not in obj]
        raise SchemaError(f"unknown preference format: missing field(s) {missing} (keys: {sorted(obj)[:8]})")
    chosen = obj["chosen"]
    if "prompt" in obj:
        return "trl_conversational" if isinstance(obj["prompt"], list) else "trl_standard"
    if isinstance(chosen, list):
        return "trl_conversational_implicit"
    if isinstance(chosen, str) and _MARKER.search(chosen):
        return "hh"
    return "trl_standard_implicit"


# --------------------------------------------------------------------------------------------------
# HH-RLHF and the text layout
# --------------------------------------------------------------------------------------------------


def split_hh_transcript(text: str) -> list[Turn]:
    """Split an HH transcript (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) into turns.

    Contents are stripped of surrounding whitespace. Raises SchemaError if there is no marker or
    non-blank text precedes the first one.
    """
    parts = _MARKER.split(text)
    # parts = [preamble, speaker1, content1, speaker2, content2, ...]
    if len(parts) < 3:
        raise SchemaError("transcript has no '\\n\\nHuman:' / '\\n\\nAssistant:' turn markers")
    if parts[0].strip():
        raise SchemaError(f"transcript has text before the first turn marker: {parts[0][:40]!r}")
    return [
        Turn(_ROLE_OF_SPEAKER[speaker], content.strip()) for speaker, content in zip(parts[1::2], parts[2::2])
    ]


def _final_response(turns: list[Turn], which: str) -> tuple[list[Turn], str]:
    if turns[-1].role != "assistant":
        raise SchemaError(f"{which} transcript does not end with an Assistant turn")
    return turns[:-1], turns[-1].content


def _parse_transcripts(obj: dict, chosen_text: str, rejected_text: str, fmt: str) -> Comparison:
    prefix_c, chosen = _final_response(split_hh_transcript(chosen_text), "chosen")
    prefix_r, rejected = _final_response(split_hh_transcript(rejected_text), "rejected")
    if prefix_c != prefix_r:
        i = _first_difference(prefix_c, prefix_r)
        raise SchemaError(
            f"chosen and rejected transcripts differ before the final Assistant turn "
            f"(first at turn {i}; {len(prefix_c)} vs {len(prefix_r)} earlier turns)"
        )
    history, prompt = _split_prompt(prefix_c, fmt)
    return _pair(obj, history, prompt, chosen, rejected)


def parse_hh(obj: dict) -> Comparison:
    """One HH-RLHF record → Comparison (history, last Human turn as prompt, final Assistant turns)."""
    return _parse_transcripts(obj, _text_field(obj, "chosen"), _text_field(obj, "rejected"), "hh")


def history_to_text(history: list[Turn], prompt: str) -> str:
    """Render history + prompt in the HH layout, ending with ``"\\n\\nAssistant:"`` (module docstring)."""
    turns = [*history, Turn("user", prompt)]
    body = "".join(f"\n\n{_SPEAKER_OF_ROLE[t.role]}: {_check_text(t.content)}" for t in turns)
    return body + "\n\nAssistant:"


def _check_text(content: str) -> str:
    # A blank-line marker inside a content would be read back as a turn boundary: refuse, not corrupt.
    # (A leading "Human:" is fine: it follows "Assistant: ", not a blank line.)
    if _INNER_MARKER.search(content):
        raise SchemaError(
            f"text contains a turn marker and cannot be written in the text layout: {content[:60]!r}"
        )
    return content


# --------------------------------------------------------------------------------------------------
# TRL readers
# --------------------------------------------------------------------------------------------------


def _parse_trl_standard(obj: dict) -> Comparison:
    prompt = _text_field(obj, "prompt")
    chosen, rejected = _text_field(obj, "chosen"), _text_field(obj, "rejected")
    if _MARKER.search(prompt):
        # Our own writer (and HH-derived datasets) put the dialogue in the prompt: re-join and split.
        return _parse_transcripts(obj, prompt + chosen, prompt + rejected, "trl_standard")
    if not prompt.strip():
        raise SchemaError("field 'prompt' is empty")
    return _pair(obj, [], prompt, chosen, rejected)


def _common_prompt(chosen: str, rejected: str) -> int:
    """Length of the shared prompt: the common prefix cut back to its last whitespace (not mid-word)."""
    lcp = os.path.commonprefix([chosen, rejected])
    cut = len(lcp)
    while cut > 0 and not lcp[cut - 1].isspace():
        cut -= 1
    return cut


def _parse_trl_standard_implicit(obj: dict) -> Comparison:
    chosen, rejected = _text_field(obj, "chosen"), _text_field(obj, "rejected")
    if _MARKER.search(chosen):
        return parse_hh(obj)
    if chosen == rejected:
        raise SchemaError("chosen and rejected are identical; cannot find the prompt")
    cut = _common_prompt(chosen, rejected)
    if not chosen[:cut].strip():
        raise SchemaError(
            "implicit-prompt text has no common prefix ending at whitespace to use as the prompt"
        )
    return _pair(obj, [], chosen[:cut], chosen[cut:], rejected[cut:])


def _single_assistant(turns: list[Turn], key: str) -> str:
    if len(turns) != 1 or turns[0].role != "assistant":
        raise SchemaError(f"field {key!r} must hold exactly one assistant message")
    return turns[0].content


def _parse_trl_conversational(obj: dict) -> Comparison:
    history, prompt = _split_prompt(_messages_field(obj, "prompt"), "prompt")
    chosen = _single_assistant(_messages_field(obj, "chosen"), "chosen")
    rejected = _single_assistant(_messages_field(obj, "rejected"), "rejected")
    return _pair(obj, history, prompt, chosen, rejected)


def _parse_trl_conversational_implicit(obj: dict) -> Comparison:
    chosen_msgs, rejected_msgs = _messages_field(obj, "chosen"), _messages_field(obj, "rejected")
    prefix_c, chosen = _final_response(chosen_msgs, "chosen")
    prefix_r, rejected = _final_response(rejected_msgs, "rejected")
    if prefix_c != prefix_r:
        i = _first_difference(prefix_c, prefix_r)
        raise SchemaError(
            f"chosen and rejected conversations differ before the final assistant message (first at message {i})"
        )
    history, prompt = _split_prompt(prefix_c, "conversation")
    return _pair(obj, history, prompt, chosen, rejected)


_PARSERS = {
    "ours": Comparison.from_dict,
    "trl_standard": _parse_trl_standard,
    "trl_standard_implicit": _parse_trl_standard_implicit,
    "trl_conversational": _parse_trl_conversational,
    "trl_conversational_implicit": _parse_trl_conversational_implicit,
    "hh": parse_hh,
}


def parse_preference(obj: dict, fmt: str = "auto") -> Comparison:
    """Convert one record in format ``fmt`` (or auto-detected) to a Comparison; SchemaError if invalid."""
    if not isinstance(obj, dict):
        raise SchemaError("record must be a JSON object")
    if fmt == "auto":
        fmt = detect_format(obj)
    if fmt not in _PARSERS:
        raise ValueError(f"unknown format {fmt!r}; expected 'auto' or one of {FORMATS}")
    return _PARSERS[fmt](obj)


def load_comparisons(
    path: str | os.PathLike, fmt: str = "auto", strict: bool = False
) -> tuple[list[Comparison], ReadReport]:
    """Read preference JSONL in any supported format; bad lines are reported (or raise with ``strict``)."""
    if fmt != "auto" and fmt not in _PARSERS:
        # Checked up front: otherwise every line would be "rejected" for a caller's typo.
        raise ValueError(f"unknown format {fmt!r}; expected 'auto' or one of {FORMATS}")
    return read_records(path, lambda obj: parse_preference(obj, fmt), strict=strict)


# --------------------------------------------------------------------------------------------------
# TRL writers
# --------------------------------------------------------------------------------------------------


def _messages(turns: list[Turn]) -> list[dict[str, str]]:
    return [{"role": t.role, "content": t.content} for t in turns]


def to_trl(c: Comparison, conversational: bool = False, explicit_prompt: bool = True) -> dict[str, Any]:
    """One Comparison → a TRL preference record; raises SchemaError for ties (TRL has none)."""
    if c.label == "tie":
        raise SchemaError("a tie cannot be written in TRL preference format")
    chosen, rejected = c.chosen, c.rejected
    if conversational:
        context = _messages([*c.history, Turn("user", c.prompt)])
        reply_c = [{"role": "assistant", "content": chosen}]
        reply_r = [{"role": "assistant", "content": rejected}]
        if explicit_prompt:
            out: dict[str, Any] = {"prompt": context, "chosen": reply_c, "rejected": reply_r}
        else:
            out = {"chosen": context + reply_c, "rejected": context + reply_r}
    else:
        context_text = history_to_text(c.history, c.prompt)
        reply_c, reply_r = " " + _check_text(chosen), " " + _check_text(rejected)
        if explicit_prompt:
            out = {"prompt": context_text, "chosen": reply_c, "rejected": reply_r}
        else:
            out = {"chosen": context_text + reply_c, "rejected": context_text + reply_r}
    out["id"] = c.sample_id
    if c.category is not None:
        out["category"] = c.category
    return out


def write_trl(
    path: str | os.PathLike,
    comparisons: Iterable[Comparison],
    conversational: bool = False,
    explicit_prompt: bool = True,
) -> tuple[int, int]:
    """Write comparisons as TRL preference JSONL; returns ``(written, skipped_ties)``.

    Ties are skipped (TRL cannot represent them) and the count is printed to stderr as well.
    """
    skipped = 0

    def records() -> Iterable[dict[str, Any]]:
        nonlocal skipped
        for c in comparisons:
            if c.label == "tie":
                skipped += 1
                continue
            yield to_trl(c, conversational=conversational, explicit_prompt=explicit_prompt)

    written = write_jsonl(path, records())
    from chatglm_rlhf.utils.console import quiet

    if skipped and not quiet():  # in a pipeline run the TRL copy is a by-product: not worth a line
        print(
            f"{path}: wrote {written} pairs, skipped {skipped} ties (not representable in TRL)",
            file=sys.stderr,
        )
    return written, skipped


# --------------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------------


def candidates_to_pairs(sample: DialogueSample) -> list[tuple[str, str]]:
    """All unordered pairs ``(responses[i], responses[j])`` with i < j, for annotation or RM scoring."""
    return list(combinations(sample.responses, 2))


# --------------------------------------------------------------------------------------------------
# SFT data: our samples, TRL's language-modelling and prompt-completion formats, or preferences
# --------------------------------------------------------------------------------------------------

# Names returned by :func:`detect_sft_format`:
#   samples            our DialogueSample records; every entry of ``responses`` is a target
#   messages           TRL conversational LM: {"messages": [{role, content}, ...]}; the last (assistant)
#                      message is the target, the user turn before it the prompt, earlier turns (system
#                      ones included) the history
#   prompt_completion  TRL prompt-completion: {"prompt": str, "completion": str}, or both as message lists
#   preference         any preference format above; the chosen response is the target
SFT_FORMATS = ("samples", "messages", "prompt_completion", "preference")


def detect_sft_format(obj: dict) -> str:
    """The SFT format of one record (see ``SFT_FORMATS``), from its keys."""
    if "messages" in obj:
        return "messages"
    if "completion" in obj:
        return "prompt_completion"
    if "responses" in obj:
        return "samples"
    if "chosen" in obj or "response_a" in obj:
        return "preference"
    raise SchemaError(
        "unknown SFT format: expected 'messages', 'prompt'+'completion', 'responses' or a preference "
        f"record (keys: {sorted(obj)[:8]})"
    )


def _sample(obj: dict, history: list[Turn], prompt: str) -> DialogueSample:
    sample_id = obj.get("id")
    return DialogueSample(
        id=str(sample_id) if sample_id is not None else stable_sample_id(history, prompt),
        prompt=prompt,
        history=list(history),
        category=obj.get("category"),
    )


def parse_sft_messages(obj: dict) -> tuple[DialogueSample, str]:
    """TRL ``{"messages": [...]}`` → (sample, target): the last assistant message is the target."""
    prefix, response = _final_response(_messages_field(obj, "messages"), "messages")
    history, prompt = _split_prompt(prefix, "messages")
    return _sample(obj, history, prompt), response


def parse_sft_prompt_completion(obj: dict) -> tuple[DialogueSample, str]:
    """TRL ``{"prompt": ..., "completion": ...}``, standard (strings) or conversational (message lists)."""
    if isinstance(obj.get("prompt"), list):
        history, prompt = _split_prompt(_messages_field(obj, "prompt"), "prompt")
        return _sample(obj, history, prompt), _single_assistant(
            _messages_field(obj, "completion"), "completion"
        )
    prompt, completion = _text_field(obj, "prompt"), _text_field(obj, "completion")
    if not prompt.strip():
        raise SchemaError("field 'prompt' is empty")
    return _sample(obj, [], prompt), completion


def load_sft_examples(
    path: str | os.PathLike, strict: bool = False
) -> tuple[list[tuple[DialogueSample, str]], ReadReport, list[str]]:
    """(sample, target) pairs of an SFT file in any of ``SFT_FORMATS``, the read report, and notes.

    The format is sniffed from the first record. Notes say what gave no target (samples without
    responses, ties), so the caller can print them.
    """
    from chatglm_rlhf.data.io import first_record, read_samples

    fmt = detect_sft_format(first_record(path))
    notes: list[str] = []
    if fmt == "samples":
        samples, report = read_samples(path, strict=strict)
        empty = [s.id for s in samples if not s.responses]
        if empty:
            notes.append(
                f"{path}: {len(empty)} samples have no response and give no SFT target (e.g. {empty[0]})"
            )
        return [(s, r) for s in samples for r in s.responses], report, notes
    if fmt == "messages":
        return (*read_records(path, parse_sft_messages, strict=strict), notes)
    if fmt == "prompt_completion":
        return (*read_records(path, parse_sft_prompt_completion, strict=strict), notes)
    comparisons, report = load_comparisons(path, strict=strict)
    ties = sum(c.label == "tie" for c in comparisons)
    if ties:
        notes.append(f"{path}: {ties} ties have no chosen response and give no SFT target")
    return [(c.sample(), c.chosen) for c in comparisons if c.label != "tie"], report, notes
