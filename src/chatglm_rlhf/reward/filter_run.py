"""Reading, writing and reporting for ``chatglm-rlhf filter`` (the rules live in :mod:`.filtering`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from chatglm_rlhf.data.io import ReadReport, read_records, write_jsonl
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.reward.balancing import format_table, make_length_fn
from chatglm_rlhf.reward.filtering import REASONS, FilterConfig, FilterResult, Label, filter_labels
from chatglm_rlhf.utils.training import save_json


def read_labels(
    path: str | Path, fmt: str = "auto", strict: bool = False
) -> tuple[list[Label], list[str], ReadReport]:
    """Every line of a preference file as a :class:`Label` with its ``file:line``, plus the rejects."""
    from chatglm_rlhf.data.formats import FORMATS, parse_preference

    if fmt != "auto" and fmt not in FORMATS:
        raise UserError(f"filter: format must be 'auto' or one of {FORMATS}, got {fmt!r}")
    labels, report = read_records(
        path,
        lambda obj, line_no: Label(parse_preference(obj, fmt), f"{path}:{line_no}"),
        strict=strict,
        with_line=True,
    )
    return labels, report.rejected, report


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
    labels, unreadable, report = read_labels(cfg.input, cfg.format, cfg.strict)
    if not quiet:
        report.print()
    length_fn = make_length_fn(cfg.tokenizer)
    result = filter_labels(labels, cfg, length_fn=length_fn, unreadable=unreadable)
    paths = output_paths(cfg.output)
    write_jsonl(paths["kept"], result.kept)
    write_jsonl(paths["dropped"], result.dropped)
    save_json(paths["summary"], summary(result))
    from chatglm_rlhf.utils import console

    if console.quiet():  # a pipeline stage: one line; the table is in the report and filter summary JSON
        s = summary(result)
        print(f"filter: kept {s['kept_labels']} of {s['read']} labels ({s['kept_pairs']} pairs); dropped "
              + ", ".join(f"{k} {v}" for k, v in s["dropped_by_reason"].items() if v))  # fmt: skip
    elif not quiet:
        print(format_summary(result))
        print(f"wrote {paths['kept']} ({len(result.kept)} pairs) and {paths['dropped']}", file=sys.stderr)
    return result
