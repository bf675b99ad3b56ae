"""``chatglm-rlhf rm train|eval|score``: train a reward model, report on held-out pairs, score responses.

* ``rm train model=SFT_OR_ENCODER data=pairs.jsonl [eval_data=...]`` saves the RM to ``output_dir``.
* ``rm eval model=RM data=pairs.jsonl`` prints the eval report and writes it as JSON.
* ``rm score model=RM data=FILE output=OUT`` scores every response of a samples file (``responses``
  lists) or both sides of a preference file, and writes the records back with their rewards.

Each reads its own recipe section: ``rm:``, ``rm_eval:``, ``rm_score:``.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatglm_rlhf.cli.common import add_stage_parser, is_main_process, stage_config
from chatglm_rlhf.config import field_
from chatglm_rlhf.data.formats import InputFormat
from chatglm_rlhf.reward.rm_config import RMConfig


@dataclass
class RMEvalConfig:
    model: str = field_("", help="a saved reward model (rm train's output_dir)")
    data: str = field_("", help="held-out pairs in any preference format")
    format: InputFormat = field_("auto", help="input format (auto = detect it from the records)")
    strict: bool = field_(False, help="exit with an error when any input line is rejected")
    output: str | None = field_(None, help="report JSON (default: MODEL/eval_report.json)")
    max_length: int | None = field_(None, help="max tokens per sequence (default: the RM's own)")
    batch_size: int = field_(16, help="sequences per forward pass")
    buckets: list[int] = field_([3, 10, 30, 100], help="length-difference bucket lower bounds (tokens)")
    device: str = field_("auto", help="auto | cpu | cuda | cuda:N | mps")
    trust_remote_code: bool = field_(False, help="allow model code from the checkpoint")


@dataclass
class RMScoreConfig:
    model: str = field_("", help="a saved reward model (rm train's output_dir)")
    data: str = field_("", help="samples JSONL with 'responses', or a preference file")
    output: str = field_("", help="JSONL with rewards added (required)")
    strict: bool = field_(False, help="exit with an error when any input line is rejected")
    max_length: int | None = field_(None, help="max tokens per sequence (default: the RM's own)")
    batch_size: int = field_(16, help="sequences per forward pass")
    device: str = field_("auto", help="auto | cpu | cuda | cuda:N | mps")
    trust_remote_code: bool = field_(False, help="allow model code from the checkpoint")


def register(sub) -> None:
    import argparse

    p = sub.add_parser(
        "rm",
        help="reward model: train | eval | score",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rm_sub = p.add_subparsers(dest="rm_command", metavar="ACTION")
    t = add_stage_parser(rm_sub, "train", RMConfig, "train a reward model (Bradley-Terry)", section="rm")
    t.set_defaults(func=run_train)
    e = add_stage_parser(rm_sub, "eval", RMEvalConfig, "evaluate a reward model on pairs", section="rm_eval")
    e.set_defaults(func=run_eval)
    s = add_stage_parser(
        rm_sub, "score", RMScoreConfig, "score responses with a reward model", section="rm_score"
    )
    s.set_defaults(func=run_score)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_train(args) -> int:
    from chatglm_rlhf.reward.evaluation import format_report
    from chatglm_rlhf.reward.trainer import run_rm_train

    cfg = stage_config(args)
    result = run_rm_train(cfg)
    if not is_main_process():
        return 0  # with several processes, rank 0 reports for all (the metrics are reduced over ranks)
    print(
        f"rm: {result['steps']} steps, final loss {result['train_loss']:.4f}, "
        f"{result['pairs_per_second']:.1f} pairs/s; model saved to {cfg.output_dir}"
    )
    if "eval" in result:
        print(format_report(result["eval"]))
    return 0


def _scorer(cfg):
    from chatglm_rlhf.errors import UserError
    from chatglm_rlhf.reward.scorer import RewardScorer

    if not cfg.model or not cfg.data:
        raise UserError("rm: model=... and data=... are required")
    return RewardScorer.from_pretrained(
        cfg.model,
        device=cfg.device,
        max_length=cfg.max_length,
        batch_size=cfg.batch_size,
        trust_remote_code=cfg.trust_remote_code,
    )


def run_eval(args) -> int:
    from pathlib import Path

    from chatglm_rlhf.data.formats import load_comparisons
    from chatglm_rlhf.reward.evaluation import evaluate_comparisons, format_report
    from chatglm_rlhf.utils.training import save_json

    cfg = stage_config(args)
    scorer = _scorer(cfg)
    comparisons, report = load_comparisons(cfg.data, cfg.format, strict=cfg.strict)
    report.print()
    result = evaluate_comparisons(scorer, comparisons, cfg.buckets)
    out = Path(cfg.output or Path(cfg.model) / "eval_report.json")
    save_json(out, result)
    print(format_report(result))
    print(f"report written to {out}")
    return 0


def run_score(args) -> int:
    from chatglm_rlhf.errors import UserError
    from chatglm_rlhf.reward.scoring_io import score_file

    cfg = stage_config(args)
    if not cfg.output:
        raise UserError("rm score: output=... is required")
    n = score_file(_scorer(cfg), cfg.data, cfg.output, strict=cfg.strict)
    print(f"rm score: {n} responses scored; written to {cfg.output}")
    return 0
