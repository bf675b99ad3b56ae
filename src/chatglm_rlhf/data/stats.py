"""Dataset statistics in the layout of the paper's dataset table.

Definitions (per comparison, then averaged):

* ``turns``: user turns in the dialogue, the current prompt included (a single-turn sample has 1).
* ``history_tokens``: tokens in the contents of all history turns (system, user and assistant).
* ``prompt_tokens``: tokens in the current prompt.
* ``response_tokens``: tokens per response, averaged over both responses of every comparison.

Token counts are of message contents only (no template markers). With a tokenizer they are its token
counts; without one, :data:`WORD_RE` counts each CJK character, each run of other letters/digits, and each
punctuation mark as one token: a rough, tokenizer-free proxy comparable across languages.
"""

from __future__ import annotations

import re
from statistics import fmean

from chatglm_rlhf.data.schema import Comparison

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
WORD_RE = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])\w)+|[^\w\s]")


def count_tokens(text: str, tokenizer=None) -> int:
    if tokenizer is None:
        return len(WORD_RE.findall(text))
    return len(tokenizer.encode(text, add_special_tokens=False))


def _mean(values: list[float]) -> float:
    return fmean(values) if values else 0.0


def dataset_stats(comparisons: list[Comparison], tokenizer=None) -> dict:
    """Counts and means for the dataset table (see the module docstring for the definitions)."""

    def n(text: str) -> int:
        return count_tokens(text, tokenizer)

    turns = [1 + sum(t.role == "user" for t in c.history) for c in comparisons]
    history = [sum(n(t.content) for t in c.history) for c in comparisons]
    prompts = [n(c.prompt) for c in comparisons]
    responses = [n(r) for c in comparisons for r in (c.response_a, c.response_b)]
    return {
        "n_comparisons": len(comparisons),
        "n_ties": sum(c.label == "tie" for c in comparisons),
        "mean_turns": _mean(turns),
        "mean_history_tokens": _mean(history),
        "mean_prompt_tokens": _mean(prompts),
        "mean_response_tokens": _mean(responses),
        "tokenizer": "regex"
        if tokenizer is None
        else str(getattr(tokenizer, "name_or_path", "") or "custom"),
    }


_ROWS = (
    ("n_comparisons", "Comparisons"),
    ("n_ties", "Ties"),
    ("mean_turns", "Turns per dialogue (mean)"),
    ("mean_history_tokens", "History tokens (mean)"),
    ("mean_prompt_tokens", "Prompt tokens (mean)"),
    ("mean_response_tokens", "Response tokens (mean)"),
    ("tokenizer", "Token counter"),
)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_stats_table(stats: dict) -> str:
    """A two-column text table of :func:`dataset_stats` output (unknown keys are appended)."""
    rows = [(label, _fmt(stats[key])) for key, label in _ROWS if key in stats]
    known = {key for key, _ in _ROWS}
    rows += [(key, _fmt(v)) for key, v in stats.items() if key not in known]
    lw = max(len(r[0]) for r in rows + [("Statistic", "")])
    vw = max(len(r[1]) for r in rows + [("", "Value")])
    lines = [f"{'Statistic':<{lw}}  {'Value':>{vw}}", f"{'-' * lw}  {'-' * vw}"]
    lines += [f"{label:<{lw}}  {value:>{vw}}" for label, value in rows]
    return "\n".join(lines)
