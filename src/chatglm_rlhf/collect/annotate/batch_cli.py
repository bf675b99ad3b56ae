"""``chatglm-rlhf annotate batch``: choose the pairs worth a label from a candidates file, under a budget.

The same selection as the pipeline's feedback rounds (collect/batch.py): ``--select random`` (the
control) or ``uncertainty`` (the pairs an ensemble of reward models, ``--rm A,B,...``, is least sure
about). The batch it writes is loaded as it is: ``annotate load BATCH --project P`` brings only the
chosen pairs, in the batch's round.
"""

from __future__ import annotations

import argparse
import os

from chatglm_rlhf.errors import UserError

UNCERTAINTY_KINDS = (
    "entropy",
    "disagreement",
    "bald",
)  # reward/ensemble.py's (not imported: --help stays fast)


def round_arg(text: str) -> int:
    """``--round``: a feedback round number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--round {text!r}: a round number (1, 2, ...)")
    return value


def _scorers(paths: list[str], device: str, trust_remote_code: bool):
    """The ensemble's reward models, loaded one at a time (a generator), as the pipeline's scorer loads them."""
    from chatglm_rlhf.reward.scorer import RewardScorer

    for path in paths:
        yield RewardScorer.from_pretrained(
            path, device=device, trust_remote_code=trust_remote_code, key="--rm"
        )


def _rm_paths(args: argparse.Namespace) -> list[str]:
    paths = [p.strip() for p in args.rm.split(",") if p.strip()]
    if args.select == "uncertainty" and len(paths) < 2:
        raise UserError("--select uncertainty: --rm needs two or more reward model folders, comma-separated")
    missing = [p for p in paths if not os.path.isdir(p)]
    if missing:
        raise UserError(f"--rm {missing[0]}: not a folder (a reward model saved by `chatglm-rlhf rm train`)")
    return paths


def cmd_batch(args: argparse.Namespace) -> int:
    from chatglm_rlhf.collect.batch import batch_records, choose
    from chatglm_rlhf.data.io import read_samples, write_jsonl

    if args.budget < args.overlap or args.overlap < 1 or args.per_prompt < 0:
        raise UserError(
            f"--budget {args.budget} must buy one pair (>= --overlap {args.overlap} >= 1), --per-prompt >= 0"
        )
    if not os.path.isfile(args.candidates):
        raise UserError(f"{args.candidates}: no such file")
    paths = _rm_paths(args)
    cands, report = read_samples(args.candidates)
    report.print()
    if not cands:
        raise UserError(f"{args.candidates}: no candidates to choose from")
    scorers = _scorers(paths, args.device, args.trust_remote_code) if args.select == "uncertainty" else ()
    n_pairs = args.budget // args.overlap
    sel = choose(cands, n_pairs, args.select, scorers, args.uncertainty, args.seed, args.per_prompt)
    records = batch_records(cands, sel, round_=args.round, model=args.model)
    write_jsonl(args.output, records)
    print(
        f"batch: {len(sel.chosen)} of {len(sel.pairs)} candidate pairs ({args.select}; budget {args.budget} "
        f"comparisons at overlap {args.overlap}) from {len(records)} prompts -> {args.output}\n"
        f"load it with: chatglm-rlhf annotate load {args.output} --project PROJECT --overlap {args.overlap}"
    )
    return 0


def add_batch_parser(sub, fmt) -> None:
    """``annotate batch``: no database (the batch is a file, loaded by ``annotate load``)."""
    p = sub.add_parser(
        "batch", formatter_class=fmt, help="choose the pairs to annotate from candidates under a budget"
    )
    p.add_argument(
        "candidates", help="our samples JSONL with k >= 2 responses per prompt (chatglm-rlhf generate)"
    )
    p.add_argument("-o", "--output", required=True, help="the batch JSONL to write (for annotate load)")
    p.add_argument("--budget", type=int, required=True, help="comparisons (labels) to spend")
    p.add_argument(
        "--overlap", type=int, default=3, help="annotators per pair: budget // overlap pairs are chosen"
    )
    p.add_argument(
        "--select", choices=("random", "uncertainty"), default="random", help="how pairs are chosen"
    )
    p.add_argument(
        "--rm", default="", help="select=uncertainty: reward model folders, comma-separated (>= 2)"
    )
    p.add_argument(
        "--uncertainty", choices=UNCERTAINTY_KINDS, default="disagreement", help="the ensemble's score"
    )
    p.add_argument(
        "--round", type=round_arg, default=None, help="the batch's round (default: meta.round, else 1)"
    )
    p.add_argument("--model", default="", help="the model that wrote the answers (recorded for each answer)")
    p.add_argument(
        "--per-prompt", type=int, default=0, help="at most this many pairs from one prompt (0 = no cap)"
    )
    p.add_argument("--seed", type=int, default=0, help="random: the sample; uncertainty: the order of ties")
    p.add_argument("--device", default="cpu", help="where the reward models score (cpu, cuda, auto)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the reward models' own code")
    p.set_defaults(func=cmd_batch)
