"""JSONL reading and writing that never drops a record silently.

Every reader returns the parsed records together with a :class:`ReadReport`: how many lines were read,
kept and rejected, and for each rejection ``file:line: reason``. Callers print the report (or raise on
it with ``strict=True``) so a user always sees what happened to every line.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from chatglm_rlhf.data.schema import Comparison, DialogueSample, SchemaError
from chatglm_rlhf.errors import UserError

T = TypeVar("T")


class DataError(UserError, ValueError):
    """Raised for unreadable input in strict mode; the message has ``file:line: reason``."""


@dataclass
class ReadReport:
    path: str
    read: int = 0
    kept: int = 0
    rejected: list[str] = field(default_factory=list)  # "file:line: reason"

    def reject(self, line_no: int, reason: str) -> None:
        self.rejected.append(f"{self.path}:{line_no}: {reason}")

    def summary(self) -> str:
        return f"{self.path}: read {self.read}, kept {self.kept}, rejected {len(self.rejected)}"

    def print(self, file=None, max_errors: int = 20) -> None:
        file = file or sys.stderr
        print(self.summary(), file=file)
        for msg in self.rejected[:max_errors]:
            print(f"  {msg}", file=file)
        if len(self.rejected) > max_errors:
            print(f"  ... and {len(self.rejected) - max_errors} more", file=file)


class NotUtf8Line(DataError):
    """A line with a byte that is not UTF-8: ``file:line:column`` of that byte (column in characters)."""

    def __init__(self, path: str | os.PathLike, line_no: int, raw: bytes, e: UnicodeDecodeError) -> None:
        self.line_no = line_no
        self.column = len(raw[: e.start].decode("utf-8", errors="replace")) + 1
        self.reason = f"{e.reason}: byte 0x{raw[e.start]:02x}" if e.start < len(raw) else e.reason
        super().__init__(f"{path}:{line_no}:{self.column}: not UTF-8 text ({self.reason})")


def iter_json_lines(path: str | os.PathLike) -> Iterator[tuple[int, Any | Exception]]:
    """Yield ``(line_no, obj)`` for every non-blank line; ``obj`` is the exception if the JSON is bad
    (a ``json.JSONDecodeError``) or the line is not UTF-8 (a :class:`NotUtf8Line`). A UTF-8 byte-order
    mark at the start of the file is skipped."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    # Bytes, decoded line by line: a decoding error then knows its line and column.
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield line_no, NotUtf8Line(path, line_no, raw, e)
                continue
            if not line.strip():
                continue
            try:
                # Without the line end: a line cut short in a string is "Unterminated string", with
                # the column where that string starts, not "Invalid control character" at the end.
                yield line_no, json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                yield line_no, e


def first_record(path: str | os.PathLike) -> dict:
    """The first JSON object of a JSONL file: readers of several kinds sniff its keys to pick a parser."""
    first = next((obj for _, obj in iter_json_lines(path) if isinstance(obj, dict)), None)
    if first is None:
        raise UserError(f"{path}: no JSON records")
    return first


def read_records(
    path: str | os.PathLike,
    parse: Callable[..., T | list[T]],
    strict: bool = False,
    with_line: bool = False,
) -> tuple[list[T], ReadReport]:
    """Read a JSONL file, turning each JSON object into records with ``parse``.

    ``parse`` may return one record or a list of them (e.g. one HH-RLHF line gives one comparison, one
    candidates line with k responses gives several pairs). It raises ``SchemaError``/``ValueError`` to
    reject a line; the reason lands in the report with its file and line number. With ``with_line``
    it is called as ``parse(obj, line_no)`` (records that remember where they came from).
    """
    report = ReadReport(str(path))
    out: list[T] = []
    if not Path(path).exists():
        raise DataError(f"{path}: no such file")
    for line_no, obj in iter_json_lines(path):
        report.read += 1
        if isinstance(obj, NotUtf8Line):
            report.rejected.append(str(obj))
            continue
        if isinstance(obj, Exception):
            msg = obj.msg.removesuffix(" at")  # json says "... at", then gives the column
            report.reject(line_no, f"invalid JSON ({msg} at column {obj.colno})")
            continue
        try:
            rec = parse(obj, line_no) if with_line else parse(obj)
        except (SchemaError, ValueError, KeyError, TypeError) as e:
            report.reject(line_no, str(e) or type(e).__name__)
            continue
        report.kept += 1
        if isinstance(rec, list):
            out.extend(rec)
        else:
            out.append(rec)
    if strict and report.rejected:
        raise DataError("\n".join(report.rejected))
    return out, report


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Write dicts or objects with ``to_dict()`` as JSONL (atomically: temp file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            d = r.to_dict() if hasattr(r, "to_dict") else r
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_comparisons(path: str | os.PathLike, strict: bool = False) -> tuple[list[Comparison], ReadReport]:
    """Read our comparison JSONL."""
    return read_records(path, Comparison.from_dict, strict=strict)


def read_samples(path: str | os.PathLike, strict: bool = False) -> tuple[list[DialogueSample], ReadReport]:
    """Read our dialogue-sample JSONL (prompts, or candidates with ``responses``)."""
    return read_records(path, DialogueSample.from_dict, strict=strict)
