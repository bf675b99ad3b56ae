"""``chatglm-rlhf data``: inspect and convert preference data (stats, convert)."""

from __future__ import annotations

import argparse

# The input formats (formats.InputFormat), written out: importing formats here would slow --help.
FORMAT_CHOICES = [
    "auto",
    "ours",
    "trl_standard",
    "trl_standard_implicit",
    "trl_conversational",
    "trl_conversational_implicit",
    "hh",
]
STRICT_HELP = "exit with an error (2) when any line is rejected, instead of reporting and skipping it"
FILE_HELP = "preference file: ours, TRL (standard/conversational) or HH-RLHF; JSONL, .json, Parquet or a datasets folder"


def register(sub) -> None:
    p = sub.add_parser("data", help="dataset statistics and format conversion")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    fmt = argparse.ArgumentDefaultsHelpFormatter
    s = dsub.add_parser("stats", help="the paper's dataset table for a preference file", formatter_class=fmt)
    s.add_argument("file", help=FILE_HELP)
    s.add_argument("--format", default="auto", choices=FORMAT_CHOICES, help="input format (auto: per line)")
    s.add_argument("--strict", action="store_true", help=STRICT_HELP)
    s.add_argument("--tokenizer", default=None, help="tokenizer path for token counts (default: word tokens)")
    s.set_defaults(func=run_stats)
    c = dsub.add_parser("convert", help="convert between preference formats", formatter_class=fmt)
    c.add_argument("file", help=FILE_HELP)
    c.add_argument("-o", "--output", required=True, help="output file")
    c.add_argument(
        "--to", default="ours", choices=["ours", "trl", "trl-conversational"], help="output format"
    )
    c.add_argument("--format", default="auto", choices=FORMAT_CHOICES, help="input format (auto: per line)")
    c.add_argument("--strict", action="store_true", help=STRICT_HELP)
    c.set_defaults(func=run_convert)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def run_stats(args) -> int:
    from chatglm_rlhf.data.formats import load_comparisons
    from chatglm_rlhf.data.stats import dataset_stats, format_stats_table

    comparisons, report = load_comparisons(args.file, fmt=args.format, strict=args.strict)
    report.print()
    if not comparisons:  # a table of zeros would read as a result
        from chatglm_rlhf.errors import UserError

        raise UserError(
            f"{args.file}: no usable preference record (read {report.read}, every one rejected above)"
        )
    tok = None
    if args.tokenizer:
        from chatglm_rlhf.models.loading import load_tokenizer

        tok = load_tokenizer(args.tokenizer)
    print(format_stats_table(dataset_stats(comparisons, tok)))
    return 0


def run_convert(args) -> int:
    from chatglm_rlhf.data.formats import load_comparisons, write_trl
    from chatglm_rlhf.data.io import write_jsonl

    comparisons, report = load_comparisons(args.file, fmt=args.format, strict=args.strict)
    report.print()
    if args.to == "ours":
        n = write_jsonl(args.output, comparisons)
        print(f"wrote {n} comparisons to {args.output}")
    else:
        n, ties = write_trl(args.output, comparisons, conversational=args.to == "trl-conversational")
        print(f"wrote {n} comparisons to {args.output}; {ties} ties skipped (TRL has no tie label)")
    return 0
