"""Reading, writing and reporting for ``chatglm-rlhf filter`` (the rules live in :mod:`.filtering`)."""

from __future__ import annotations

import codecs
import json
import sys
from array import array
from pathlib import Path
from typing import Any, BinaryIO

from chatglm_rlhf.data.io import (
    DataError,
    ReadReport,
    is_jsonl_file,
    iter_parsed,
    read_records,
    strict_message,
    write_jsonl,
)
from chatglm_rlhf.data.schema import Comparison
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.reward.balancing import format_table, make_length_fn
from chatglm_rlhf.reward.filter_votes import Dropped, Vote
from chatglm_rlhf.reward.filtering import (
    REASONS,
    FilterConfig,
    FilterResult,
    Label,
    filter_labels,
    filter_votes,
    screen,
    unreadable_entry,
)
from chatglm_rlhf.utils.training import save_json


def read_labels(
    path: str | Path, fmt: str = "auto", strict: bool = False
) -> tuple[list[Label], list[str], ReadReport]:
    """Every line of a preference file as a :class:`Label` with its ``file:line``, plus the rejects."""
    from chatglm_rlhf.data.formats import parse_preference

    _check_format(fmt)
    labels, report = read_records(
        path,
        lambda obj, line_no: Label(parse_preference(obj, fmt), f"{path}:{line_no}"),
        strict=strict,
        with_line=True,
    )
    return labels, report.rejected, report


def _check_format(fmt: str) -> None:
    from chatglm_rlhf.data.formats import FORMATS

    if fmt != "auto" and fmt not in FORMATS:
        raise UserError(f"filter: format must be 'auto' or one of {FORMATS}, got {fmt!r}")


class FileRecords:
    """The labels of a JSONL file, re-read by byte offset when an output or ledger line is written:
    the filter keeps a :class:`Vote` per label (~300 bytes), not every dialogue (~9 KB at the paper's
    shape), so its memory stays a small fraction of the file however many comparisons it has."""

    def __init__(self, path: str | Path, fmt: str) -> None:
        self.path, self.fmt = str(path), fmt
        self.line_starts = array("q")  # byte offset of every line, filled while reading
        self.lines = array("q")  # the line number of every label (ref -> line)
        self._file: BinaryIO | None = None

    def source(self, ref: int) -> str:
        return f"{self.path}:{self.lines[ref]}"

    def comparison(self, ref: int) -> Comparison:
        from chatglm_rlhf.data.formats import parse_preference

        if self._file is None:
            self._file = open(self.path, "rb")  # noqa: SIM115 (kept open while the outputs are written)
        line_no = self.lines[ref]
        self._file.seek(self.line_starts[line_no - 1])
        raw = self._file.readline()
        if line_no == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        return parse_preference(json.loads(raw), self.fmt)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def filter_file(cfg: FilterConfig, length_fn, quiet: bool = False) -> tuple[FilterResult, FileRecords | None]:
    """Read and filter ``cfg.input``: a JSONL file streamed into votes, anything else (Parquet, a JSON
    list, a datasets folder: read whole by their readers anyway) through :func:`filter_labels`."""
    from chatglm_rlhf.data.formats import parse_preference

    _check_format(cfg.format)
    if not is_jsonl_file(cfg.input):
        labels, unreadable, report = read_labels(cfg.input, cfg.format, cfg.strict)
        if not quiet:
            report.print()
        return filter_labels(labels, cfg, length_fn=length_fn, unreadable=unreadable), None
    records, report = FileRecords(cfg.input, cfg.format), ReadReport(str(cfg.input))
    votes: list[Vote] = []
    dropped: list[Dropped] = []
    parsed = iter_parsed(
        cfg.input, lambda obj: parse_preference(obj, cfg.format), report, line_starts=records.line_starts
    )
    for line_no, comparison in parsed:
        records.lines.append(line_no)
        out = screen(comparison, len(records.lines) - 1, cfg, length_fn, records)
        (dropped if isinstance(out, Dropped) else votes).append(out)
    if cfg.strict and report.rejected:
        report.print()
        raise DataError(strict_message(report))
    if not quiet:
        report.print()
    dropped[:0] = [unreadable_entry(msg) for msg in report.rejected]
    return filter_votes(votes, dropped, report.read, cfg, records), records


def output_paths(output: str | Path) -> dict[str, Path]:
    """``OUT``, ``OUT.dropped.jsonl`` and ``OUT.summary.json`` (``.jsonl`` stripped from the stem)."""
    out = Path(output)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return {
        "kept": out,
        "dropped": out.with_name(stem + ".dropped.jsonl"),
        "summary": out.with_name(stem + ".summary.json"),
    }


def summary(result: FilterResult) -> dict[str, Any]:
    """The numbers of a filter run, as written to ``OUT.summary.json`` and used as stage metrics."""
    return {
        "read": result.read,
        "kept_labels": result.kept_labels,
        "kept_pairs": len(result.kept),
        "dropped": len(result.dropped),
        "dropped_by_reason": result.counts(),
        "multi_label_pairs": result.multi_label_pairs,
        "pair_agreement": result.pair_agreement,
        "spammers": result.spammers,
        "annotator_agreement": {
            a: {"agree": g, "scored": n, "rate": g / n if n else None}
            for a, (g, n) in sorted(result.annotator_agreement.items())
        },
        "length_buckets": [r.to_dict() for r in result.balance_rows],
    }


def format_summary(result: FilterResult, max_annotators: int = 8) -> str:
    counts = result.counts()
    lines = [f"{'reason':<22} {'labels':>8}"]
    lines += [f"{r:<22} {counts[r]:>8}" for r in REASONS if r in counts]
    lines.append(f"{'dropped (total)':<22} {len(result.dropped):>8}")
    lines.append(f"{'kept':<22} {result.kept_labels:>8}   -> {len(result.kept)} pairs")
    lines.append(f"{'read':<22} {result.read:>8}   (kept + dropped = read)")
    if result.multi_label_pairs:
        lines.append(
            f"agreement: {result.multi_label_pairs} pairs with >= 2 labels, "
            f"mean majority share {100 * (result.pair_agreement or 0):.1f}%"
        )
    scored = sorted(
        ((g / n, a, n) for a, (g, n) in result.annotator_agreement.items() if n), key=lambda t: t[0]
    )
    if scored:
        shown = ", ".join(f"{a} {100 * r:.0f}% of {n}" for r, a, n in scored[:max_annotators])
        lines.append(f"lowest annotator agreement: {shown}")
    if result.spammers:
        lines.append(f"spammers dropped: {', '.join(sorted(result.spammers))}")
    lines.append("length balancing (share of pairs where the longer response won):")
    lines.append(format_table(result.balance_rows))
    return "\n".join(lines)


def run_filter(cfg: FilterConfig, quiet: bool = False) -> FilterResult:
    """Read ``cfg.input``, filter, write ``cfg.output`` (+ dropped ledger + summary), print the report."""
    if not cfg.input:
        raise UserError("filter: an input file is required (chatglm-rlhf filter IN -o OUT)")
    if not cfg.output:
        raise UserError("filter: an output file is required (-o OUT)")
    result, records = filter_file(cfg, make_length_fn(cfg.tokenizer), quiet)
    paths = output_paths(cfg.output)
    try:
        write_jsonl(paths["kept"], result.kept)
        write_jsonl(paths["dropped"], result.dropped)
    finally:
        if records is not None:
            records.close()
    save_json(paths["summary"], summary(result))
    from chatglm_rlhf.utils import console

    if console.quiet():  # a pipeline stage: one line; the table is in the report and filter summary JSON
        s = summary(result)
        dropped = ", ".join(f"{k} {v}" for k, v in s["dropped_by_reason"].items() if v) or "none"
        print(
            f"filter: kept {s['kept_labels']} of {s['read']} labels ({s['kept_pairs']} pairs); dropped {dropped}"
        )
    elif not quiet:
        print(format_summary(result))
        print(f"wrote {paths['kept']} ({len(result.kept)} pairs) and {paths['dropped']}", file=sys.stderr)
    return result
