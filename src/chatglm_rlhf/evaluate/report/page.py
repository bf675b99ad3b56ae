"""``DIR/report.html``: one self-contained page (inline CSS, plots as embedded PNG) about any RLHF run.

:func:`write_report` reads a ``metrics`` dict (the run's ``metrics.json``, nested by stage as the
pipeline writes it) and a few files it points at, and renders the sections of :data:`SECTIONS` in
pipeline order, for every profile: a core section whose data is missing says "not run", an optional one
(judges, ceiling, probe, side-by-side answers, timing) is left out. A section whose data is malformed
says what went wrong and the rest still renders. The report computes no number of its own: every number
on the page is in ``metrics.json`` (curves and scatter points come from the files named below), except
the funnel's "unaccounted" bar, drawn when the filter's counts do not add up (read - dropped != kept).

metrics.json layout (every key optional; nested dicts, or flat dotted keys such as ``"filter.read"``)::

    run.name, run.profile                 header text
    data.comparisons                      int, comparisons collected
    filter.read, filter.kept              int
    filter.dropped                        {reason: count}
    filter.balance.before / .after        [{bucket, n, longer_wins_rate}]  (share of pairs whose longer
                                          answer is preferred, per length bucket)
    rm.eval_accuracy, rm.gold_accuracy    float in [0, 1]
    rm.length_correlation                 float, Pearson r of reward and response length
    rm.per_bucket                         [{bucket, n, accuracy}]
    rm.scatter                            [[length, reward], ...] or [{length, reward}] or a path to a
                                          JSONL of {"length": .., "reward": ..} lines
    judge_rm.*                            the judge RM (tasks without gold), as rm.*
    sft.gold_score                        float, mean gold score of the SFT model's sampled answers
    ppo.*                                 PPO's training summary: kl, kl_final, sft_heldout_loss(_before),
                                          prompt_filter, lora_r, metrics_path (per-step JSONL: step and
                                          reward/raw, reward/minus_baseline, kl, response_len; or the
                                          names reward, reward_minus_baseline, kl, response_length)
    evaluate.<policy>                     the policy vs SFT. Gold: gold_win_rate_vs_sft, gold_score,
                                          sft_gold_score, mean_response_length, top_response_share, eval.
                                          Judges: judge_rm / proxy_rm / llm {win_rate, ci, win, tie, loss,
                                          n}, refusal_rate, lengths, eval. ``eval``: the eval.json of
                                          ``chatglm-rlhf evaluate`` (or a path to it): {judge, n, overall:
                                          {win, tie, loss, n, win_rate, ci, ...}, per_category, lengths,
                                          mean_score, responses_path, output_dir}
    evaluate.examples                     [{prompt, sft, ppo, judge_rm_sft, judge_rm_ppo}]
    ceiling.rows, ceiling.by_category     best-of-n of SFT samples (evaluate/ceiling.py)
    probe.<model>                         {overall, macro, by_kind: {kind: accuracy}}
    rm_nobalance, ppo_nobaseline, ...     the ablations' stages, as their main stage; the ablation table
                                          is arranged from them (report/ablations.py)
    timing                                {stage: seconds}

Run folders written before the stage library (their metrics.json also holds ``<policy>.eval``,
``<policy>.gold_win_rate_vs_sft`` and an ``ablations`` row list) render the same way: a policy's numbers
are read from ``evaluate.<policy>`` over ``<policy>``, and a given ``ablations`` list is shown as it is.
Relative paths resolve against the run directory (``responses_path`` inside an eval.json given as a
path resolves against that file's folder, then against the eval's ``output_dir``). ``artifacts`` may
override the files: ``ppo_metrics``, ``rm_scatter``, ``ppo_responses``, ``dpo_responses``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatglm_rlhf.evaluate.report.context import ReportContext, get, read_jsonl
from chatglm_rlhf.evaluate.report.html import CSS, esc, kv_table, section
from chatglm_rlhf.evaluate.report.sections import SECTIONS, headline
from chatglm_rlhf.utils.files import atomic_write_text

log = logging.getLogger(__name__)


def all_numbers(c: ReportContext) -> str:
    rows = [(k, v) for k, v in _flatten(c.metrics) if not isinstance(v, (list, dict))]
    return (
        "<section><details><summary>All numbers in metrics.json</summary>"
        + kv_table(rows)
        + "</details></section>"
    )


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        out = []
        for k, v in d.items():
            out += _flatten(v, f"{prefix}{k}.")
        return out
    if isinstance(d, list) and len(d) > 12:
        return [(prefix[:-1], f"list of {len(d)} rows")]
    if isinstance(d, list) and all(isinstance(x, dict) for x in d):
        out = []
        for i, x in enumerate(d):
            out += _flatten(x, f"{prefix}{i}.")
        return out
    return [(prefix[:-1], d)]


def render_report(run_dir: str | Path, metrics: dict, artifacts: dict | None = None) -> str:
    """The report's HTML as a string."""
    c = ReportContext(Path(run_dir), metrics or {}, dict(artifacts or {}))
    return render_page(c, headline(c), SECTIONS)


def render_page(
    c: ReportContext, headline: str, sections: list[tuple[str, Callable[[ReportContext], str]]]
) -> str:
    """A whole page: the headline, each section (one that fails says so), every number, the frame."""
    parts = [headline]
    for title, fn in sections:
        try:
            parts.append(fn(c))  # "" leaves an optional section out
        except Exception as e:  # one malformed entry must not cost the whole report
            log.warning("report section %s failed: %s", title, e)
            parts.append(section(title, "", f'<p class="error">could not render: {esc(e)}</p>'))
    parts.append(all_numbers(c))
    run_dir = c.run_dir
    name = get(c.metrics, "run.name") or Path(run_dir).resolve().name
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>RLHF report: {esc(name)}</title><style>{CSS}</style></head><body><main>"
        f'<header><h1>RLHF run report</h1><p class="sub">{esc(name)} · {esc(str(Path(run_dir)))} · '
        f"generated {when}</p></header>" + "".join(parts) + "</main></body></html>"
    )


def write_report(
    run_dir: str | Path,
    metrics: dict,
    artifacts: dict | None = None,
    output: str | Path | None = None,
    write_metrics: bool = False,
) -> Path:
    """Render ``run_dir/report.html`` (or ``output``); with ``write_metrics`` also ``run_dir/metrics.json``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = Path(output) if output else run_dir / "report.html"
    if write_metrics:
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=_json_default))
    atomic_write_text(out, render_report(run_dir, metrics, artifacts))
    return out


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return str(v)


__all__ = ["ReportContext", "get", "read_jsonl", "render_page", "render_report", "write_report"]
