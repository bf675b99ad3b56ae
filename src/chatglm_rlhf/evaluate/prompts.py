"""Evaluation prompts: our samples JSONL, or the AlignBench layout.

``ours``
    :class:`~chatglm_rlhf.data.schema.DialogueSample` records (``id``, ``prompt``, optional ``history``,
    ``category``, ``meta``). Responses in the file, if any, are ignored: both models answer afresh.
``alignbench``
    One object per question with ``question_id``, ``category``, ``subcategory``, ``question`` and
    ``reference`` (AlignBench's ``data_release.jsonl``). Each becomes a sample with ``id =
    str(question_id)``, ``prompt = question``, ``category``, and ``meta = {"subcategory", "reference",
    "source": "alignbench"}``. AlignBench's other fields (e.g. ``evidences``) are kept in ``meta`` too.

Both are read as JSONL; a file whose first non-blank character is ``[`` is read as one JSON array of such
objects. ``auto`` picks the layout from the first record (``question`` present and ``prompt`` absent =
AlignBench). Every record that cannot be used is reported with its line (or array index) and reason.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from chatglm_rlhf.data.io import DataError, ReadReport, iter_json_lines, read_records
from chatglm_rlhf.data.schema import DialogueSample, SchemaError

log = logging.getLogger(__name__)

PROMPT_FORMATS = ("auto", "ours", "alignbench")
ALIGNBENCH_FIELDS = ("question_id", "category", "subcategory", "question", "reference")


def from_alignbench(d: Any) -> DialogueSample:
    """One AlignBench question -> a sample; ``question`` must be a non-empty string."""
    if not isinstance(d, dict):
        raise SchemaError("record must be a JSON object")
    q = d.get("question")
    if not isinstance(q, str) or not q.strip():
        raise SchemaError("field 'question' must be a non-empty string")
    if "question_id" not in d:
        raise SchemaError("missing field 'question_id'")
    cat = d.get("category")
    if cat is not None and not isinstance(cat, str):
        raise SchemaError("field 'category' must be a string")
    meta = {k: v for k, v in d.items() if k not in ("question_id", "question", "category")}
    meta["source"] = "alignbench"
    meta.setdefault("subcategory", None)
    meta.setdefault("reference", None)
    return DialogueSample(id=str(d["question_id"]), prompt=q, category=cat, meta=meta)


def _from_ours(d: Any) -> DialogueSample:
    s = DialogueSample.from_dict(d)
    s.responses = []  # both models answer afresh
    return s


def _parse_for(fmt: str):
    return from_alignbench if fmt == "alignbench" else _from_ours


def _detect(first: Any) -> str:
    if isinstance(first, dict) and "question" in first and "prompt" not in first:
        return "alignbench"
    return "ours"


def _is_json_array(path: Path) -> bool:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return line.lstrip().startswith("[")
    return False


def _read_array(path: Path, fmt: str) -> tuple[list[DialogueSample], ReadReport]:
    report = ReadReport(str(path))
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON array of questions")
    if fmt == "auto":
        fmt = _detect(items[0] if items else None)
    parse = _parse_for(fmt)
    out = []
    for i, obj in enumerate(items):
        report.read += 1
        try:
            out.append(parse(obj))
            report.kept += 1
        except (SchemaError, ValueError, KeyError, TypeError) as e:
            report.rejected.append(f"{path}: record {i}: {e}")
    return out, report


def load_prompts(
    path: str | Path, fmt: str = "auto", limit: int = 0, strict: bool = False
) -> tuple[list[DialogueSample], ReadReport]:
    """Samples to evaluate on, and the report of what was read, kept and rejected.

    ``limit > 0`` keeps the first ``limit`` samples (a warning says how many were cut).
    """
    if fmt not in PROMPT_FORMATS:
        raise DataError(f"prompts format must be one of {PROMPT_FORMATS}, got {fmt!r}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if _is_json_array(path):
        samples, report = _read_array(path, fmt)
    else:
        if fmt == "auto":
            first = next((obj for _, obj in iter_json_lines(path) if isinstance(obj, dict)), None)
            fmt = _detect(first)
        samples, report = read_records(path, _parse_for(fmt))
    if strict and report.rejected:
        raise DataError("\n".join(report.rejected))
    _check_unique_ids(samples, path)
    if limit > 0 and len(samples) > limit:
        log.warning("%s: evaluating the first %d of %d prompts (limit=%d)", path, limit, len(samples), limit)
        samples = samples[:limit]
    return samples, report


def _check_unique_ids(samples: list[DialogueSample], path: Path) -> None:
    # Responses are saved and joined by id; an empty or duplicate id would mix up two prompts.
    seen: set[str] = set()
    renamed = 0
    for i, s in enumerate(samples):
        if not s.id or s.id in seen:
            s.id = f"{s.id or 'prompt'}#{i}"
            renamed += 1
        seen.add(s.id)
    if renamed:
        log.warning("%s: %d prompts had an empty or repeated id; renamed to id#index", path, renamed)
