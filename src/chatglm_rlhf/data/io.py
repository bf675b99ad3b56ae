"""Record reading (JSONL, JSON, Parquet, ``datasets`` folders) and JSONL writing; no record is dropped silently.

Every reader returns the parsed records together with a :class:`ReadReport`: how many lines were read,
kept and rejected, and for each rejection ``file:line: reason``. Callers print the report (or raise on
it with ``strict=True``) so a user always sees what happened to every line.

Inputs (:func:`iter_records`): JSONL (one object a line); a ``.json`` file holding a list of records;
Parquet (by suffix or by its ``PAR1`` magic bytes, whatever the name); a folder written by
``datasets``' ``save_to_disk``. For Parquet and dataset folders the "line" is the row number (from 1).
Parquet and folders need the ``datasets`` package (imported only when such a file is read). An input
with no records at all is an error naming the file.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, MutableSequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from chatglm_rlhf.data.schema import Comparison, DialogueSample, SchemaError
from chatglm_rlhf.errors import CorruptFileError, UserError

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
        from chatglm_rlhf.utils.console import quiet

        if quiet() and not self.rejected:
            return  # inside a pipeline run: a clean read is not news (a rejection always is)
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


_PARQUET_MAGIC = b"PAR1"
REDO_FILE = "write it again (in a pipeline run: rerun with --from the stage that wrote it)"


def iter_json_lines(
    path: str | os.PathLike, line_starts: MutableSequence[int] | None = None
) -> Iterator[tuple[int, Any | Exception]]:
    """Yield ``(line_no, obj)`` for every non-blank line; ``obj`` is the exception if the JSON is bad
    (a ``json.JSONDecodeError``) or the line is not UTF-8 (a :class:`NotUtf8Line`). A UTF-8 byte-order
    mark at the start of the file is skipped. ``line_starts``, if given, gets the byte offset of every
    line (blank ones too: line N starts at ``line_starts[N - 1]``), for a reader that comes back to one."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    if is_parquet(path):
        raise DataError(f"{path} looks like Parquet, not JSONL: read it with a reader that takes Parquet")
    # Bytes, decoded line by line: a decoding error then knows its line and column.
    pos = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if line_starts is not None:
                line_starts.append(pos)
                pos += len(raw)
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
                if not raw.endswith(b"\n"):  # the last line, bad and unterminated: the file was cut short
                    raise CorruptFileError(
                        path, f"{path}:{line_no}: the last line is not JSON and has no line end: the file "
                        "looks cut short (a copy or a run stopped while writing it)", REDO_FILE,
                    ) from None  # fmt: skip
                yield line_no, e


def is_parquet(path: str | os.PathLike) -> bool:
    """A Parquet file, by its magic bytes (whatever its name)."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(4) == _PARQUET_MAGIC


def is_jsonl_file(path: str | os.PathLike) -> bool:
    """A file that :func:`iter_records` reads as JSONL (not Parquet, not a ``.json`` list, not a folder)."""
    p = Path(path)
    return p.is_file() and not is_parquet(p) and not _is_json_array(p)


def _is_json_array(path: Path) -> bool:
    if path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    return head.startswith(b"[")


def _require_datasets(path: str | os.PathLike, what: str):
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{path} looks like {what}: reading it needs the datasets package (pip install datasets)"
        ) from None
    return datasets


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(name: str) -> bool:
    """``owner/name`` without a file suffix: what the hub calls a repository (datasets and models)."""
    return bool(_HUB_ID.match(name)) and not Path(name).suffix and ".." not in name


def _load_hub_dataset(name: str) -> list[dict]:
    """The train split of a hub dataset (needs network, or the datasets cache)."""
    datasets = _require_datasets(name, "a hub dataset id")
    try:
        return datasets.load_dataset(name, split="train").to_list()
    except Exception as e:  # offline, unknown id, no train split: one line naming the id
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{name}: no such file, and loading it as a hub dataset failed: {first}") from None


def iter_records(
    path: str | os.PathLike, line_starts: MutableSequence[int] | None = None
) -> Iterator[tuple[int, Any | Exception]]:
    """``(line_or_row_no, obj)`` for every record of a JSONL / JSON / Parquet file or a datasets folder.

    ``obj`` is the exception for a JSONL line that is not JSON (the reader rejects it with its line).
    ``line_starts``: see :func:`iter_json_lines` (JSONL only).
    """
    p = Path(path)
    if p.is_dir():
        yield from enumerate(_load_dataset_folder(p), start=1)
    elif not p.exists() and looks_like_hub_id(str(path)):
        yield from enumerate(_load_hub_dataset(str(path)), start=1)
    elif not p.is_file():
        raise DataError(f"{path}: no such file")
    elif is_parquet(p):
        _require_datasets(path, "Parquet")
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as e:  # a truncated or corrupt file: one line, not pyarrow's traceback
            raise DataError(f"{path} looks like Parquet but cannot be read: {e}") from None
        yield from enumerate(table.to_pylist(), start=1)
    elif _is_json_array(p):
        try:
            rows = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        yield from enumerate(rows if isinstance(rows, list) else [rows], start=1)
    else:
        yield from iter_json_lines(path, line_starts)


def _load_dataset_folder(path: Path) -> list[dict]:
    """The rows of a ``save_to_disk`` folder (a Dataset, or a DatasetDict with one split or a train split)."""
    if not any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json", "state.json")):
        raise DataError(f"{path}: a folder, but not a dataset saved with save_to_disk (no dataset_info.json)")
    datasets = _require_datasets(path, "a datasets folder")
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if len(splits) == 1:
            ds = ds[splits[0]]
        elif "train" in ds:
            ds = ds["train"]
        else:
            raise DataError(f"{path}: a dataset with splits {splits}; give one split's folder ({path}/SPLIT)")
    return ds.to_list()


def first_record(path: str | os.PathLike) -> dict:
    """The first record of a data file: readers of several kinds sniff its keys to pick a parser."""
    first = next((obj for _, obj in iter_records(path) if isinstance(obj, dict)), None)
    if first is None:
        raise DataError(f"{path}: no records (an empty file?)")
    return first


def iter_parsed(
    path: str | os.PathLike,
    parse: Callable[..., T],
    report: ReadReport,
    with_line: bool = False,
    line_starts: MutableSequence[int] | None = None,
) -> Iterator[tuple[int, T]]:
    """``(line_no, parse(obj))`` for every record of a data file, one at a time (see :func:`iter_records`);
    a line that is not JSON or that ``parse`` rejects (``SchemaError``/``ValueError``/...) goes to
    ``report`` with its file and line number. A file without any record is an error."""
    for line_no, obj in iter_records(path, line_starts):
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
        yield line_no, rec
    if report.read == 0:
        raise DataError(f"{path}: no records (an empty file?)")


def read_records(
    path: str | os.PathLike,
    parse: Callable[..., T | list[T]],
    strict: bool = False,
    with_line: bool = False,
) -> tuple[list[T], ReadReport]:
    """Read a data file (see :func:`iter_records`), turning each JSON object into records with ``parse``.

    ``parse`` may return one record or a list of them (e.g. one HH-RLHF line gives one comparison, one
    candidates line with k responses gives several pairs). It raises ``SchemaError``/``ValueError`` to
    reject a line; the reason lands in the report with its file and line number. With ``with_line``
    it is called as ``parse(obj, line_no)`` (records that remember where they came from).
    A file without any record is an error; with ``strict`` so is any rejected line (the report is
    printed first, then one line says how many). :func:`iter_parsed` streams instead.
    """
    report = ReadReport(str(path))
    out: list[T] = []
    for _, rec in iter_parsed(path, parse, report, with_line):
        if isinstance(rec, list):
            out.extend(rec)
        else:
            out.append(rec)
    if strict and report.rejected:
        report.print()
        raise DataError(strict_message(report))
    return out, report


def strict_message(report: ReadReport) -> str:
    """The one-line error of ``strict``: how many lines were rejected and the first of them."""
    n = len(report.rejected)
    return (
        f"{report.path}: {n} of {report.read} records rejected and strict is on; first: {report.rejected[0]}"
    )


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
    """Read dialogue samples (prompts, or candidates with ``responses``) from any input :func:`iter_records` reads."""
    return read_records(path, DialogueSample.from_dict, strict=strict)
