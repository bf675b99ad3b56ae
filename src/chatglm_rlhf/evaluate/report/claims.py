"""The paper's four claims, each with its figures and whether this run (or these seeds) shows it.

One function turns a run's metrics into plain numbers (:func:`figures`); one judges any number of runs
(:func:`judge`): the report calls it with one run, ``scripts/seed_summary.py`` with every seed, so one
rule decides "shown" in both places. Each rule is written next to its claim; a claim whose ablation did
not run says which to turn on. Probe figures use the probe's held-out ``test`` items, never ``dev``
(which may be used to choose settings).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from chatglm_rlhf.evaluate.health import collapsed
from chatglm_rlhf.evaluate.report.context import ReportContext

HEADLINE = {"ppo": 0.70, "dpo": 0.62}  # the demo world's headline targets (gold win rate vs SFT)


def _probe(c: ReportContext, name: str) -> float | None:
    return c.get(f"probe.{name}.by_split.test", c.get(f"probe.{name}.overall"))


def _collapsed(c: ReportContext, name: str) -> list[str]:
    shares = c.get(f"evaluate.{name}.top_response_share_by_category") or {}
    return sorted(cat for cat, s in shares.items() if cat != "harmful" and collapsed(s))


def figures(c: ReportContext) -> dict[str, Any]:
    """The numbers the claims are judged on, from one run's metrics (None where a stage did not run)."""
    sft_probe = _probe(c, "sft")
    drop = lambda name: None if sft_probe is None or _probe(c, name) is None else sft_probe - _probe(c, name)  # noqa: E731
    return {
        "win": {p: c.get(f"evaluate.{p}.gold_win_rate_vs_sft") for p in HEADLINE},
        "collapsed": {p: _collapsed(c, p) for p in HEADLINE},
        "fed_std": (c.get("ppo.reward_train_std"), c.get("ppo_nobaseline.reward_train_std")),
        "probe_drop": (drop("ppo_stress"), drop("ppo_stress_noptx")),
        "length_corr": (c.get("rm.length_correlation"), c.get("rm_nobalance.length_correlation")),
        "gold_accuracy": (c.get("rm.gold_accuracy"), c.get("rm_nobalance.gold_accuracy")),
    }


def _stat(xs: Sequence[float | None]) -> tuple[float, float] | None:
    """(mean, sd over seeds; 0 for one run), or None when any run lacks the figure."""
    if not xs or any(x is None for x in xs):
        return None
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0  # type: ignore[arg-type]


def _fmt(s: tuple[float, float] | None, n: int) -> str:
    if s is None:
        return "-"
    return f"{s[0]:.3f}" + (f" +- {s[1]:.3f}" if n > 1 else "")


def judge(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{claim, figures, rule, shown}]`` over the runs' :func:`figures` (``shown`` None: not run)."""
    n, rows = len(runs), []
    win = {p: _stat([r["win"][p] for r in runs]) for p in HEADLINE}
    bad = sorted({f"{p}: {cat}" for r in runs for p in HEADLINE for cat in r["collapsed"][p]})
    rows.append({
        "claim": "PPO and DPO beat SFT (without collapse)",
        "figures": ", ".join(f"{p.upper()} gold win {_fmt(win[p], n)}" for p in HEADLINE)
        + f"; collapsed categories: {', '.join(bad) or 'none'}",
        "rule": "mean win rate PPO >= 0.70, DPO >= 0.62; no collapsed non-harmful category in any run",
        "shown": None if None in win.values() else all(win[p][0] >= t for p, t in HEADLINE.items()) and not bad,
    })  # fmt: skip
    on, off = (_stat([r["fed_std"][i] for r in runs]) for i in (0, 1))
    rows.append({
        "claim": "the reference baseline r(x,y) - r(x,y_ref) steadies PPO's reward",
        "figures": f"std over steps of the reward fed to GAE: with {_fmt(on, n)}, without {_fmt(off, n)}",
        "rule": "lower with the baseline (mean)",
        "shown": None if on is None or off is None else on[0] < off[0],
        "needs": "ablations=[baseline]",
    })  # fmt: skip
    ptx, noptx = (_stat([r["probe_drop"][i] for r in runs]) for i in (0, 1))
    rows.append({
        "claim": "the ptx (SFT) loss prevents forgetting (declared stress test: PPO pushed harder)",
        "figures": f"probe drop vs SFT (test items): without ptx {_fmt(noptx, n)}, with ptx {_fmt(ptx, n)}",
        "rule": "drop without ptx > 0 and >= 2x its seed spread; drop with ptx <= half of it",
        "shown": None if ptx is None or noptx is None
        else noptx[0] > 0 and noptx[0] >= 2 * noptx[1] and ptx[0] <= noptx[0] / 2,
        "needs": "ablations=[ptx_stress]",
    })  # fmt: skip
    bal, unbal = (_stat([abs(r["length_corr"][i]) if r["length_corr"][i] is not None else None for r in runs])
                  for i in (0, 1))  # fmt: skip
    acc = [_stat([r["gold_accuracy"][i] for r in runs]) for i in (0, 1)]
    rows.append({
        "claim": "bucket-based length balancing cuts the reward model's length bias",
        "figures": f"abs(corr(reward, length)) on gold ties: balanced {_fmt(bal, n)}, unbalanced {_fmt(unbal, n)}; "
        f"gold accuracy {_fmt(acc[0], n)} vs {_fmt(acc[1], n)}",
        "rule": "lower abs(corr) with balancing (mean)",
        "shown": None if bal is None or unbal is None else bal[0] < unbal[0],
        "needs": "ablations=[length_balance]",
    })  # fmt: skip
    return rows


def verdict(row: dict[str, Any]) -> str:
    if row["shown"] is None:
        return f"not run ({row.get('needs', 'its stages')})"
    return "shown" if row["shown"] else "not shown"


def markdown(rows: list[dict[str, Any]], n_runs: int) -> str:
    head = f"| the paper's claim | figures ({n_runs} run{'s' if n_runs > 1 else ''}) | rule | verdict |"
    lines = [head, "| --- | --- | --- | --- |"]
    lines += [f"| {r['claim']} | {r['figures']} | {r['rule']} | {verdict(r)} |" for r in rows]
    return "\n".join(lines)


def section_(c: ReportContext) -> str:
    """This run's row per claim (one seed; ``scripts/seed_summary.py`` judges several the same way).
    Left out for a run without a gold judge (the claims are read against ground truth)."""
    from chatglm_rlhf.evaluate.report.html import section, table

    if c.get("evaluate.ppo.gold_win_rate_vs_sft") is None:
        return ""
    rows = judge([figures(c)])
    intro = (
        "Each of the paper's claims with this run's figures and the rule that says whether it shows it (one "
        "seed: scripts/seed_summary.py judges several seeds by the same rules, with their spread)."
    )
    return section("The paper's claims", intro, table(["claim", "figures", "rule", "verdict"],
                   [[r["claim"], r["figures"], r["rule"], verdict(r)] for r in rows]))  # fmt: skip
