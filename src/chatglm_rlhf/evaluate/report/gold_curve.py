"""The demo's over-optimisation section: proxy vs gold along PPO and its twins, on the dev prompts.

    <policy>_gold_curve   {policy, points: [{step, proxy_rm, gold, proxy_rm_score, gold_score, kl,
                           [ensemble_mean, ensemble_std, ensemble_reward]}], sft_*_score, gold_drop,
                           ensemble, lam}   (pipeline/stages/overopt.gold_curve)

Returns "" when no curve ran (``ppo.snapshot_every=0``, the default).
"""

from __future__ import annotations

from typing import Any

from chatglm_rlhf.evaluate.report import plots
from chatglm_rlhf.evaluate.report.context import ReportContext
from chatglm_rlhf.evaluate.report.html import fmt, img, kv_table, section, table

SUFFIX = "_gold_curve"
COLUMNS = (("proxy_rm", "proxy win rate"), ("gold", "gold win rate"), ("proxy_rm_score", "proxy score"),
           ("gold_score", "gold score"), ("ensemble_reward", "ensemble reward"), ("ensemble_std", "ensemble std"),
           ("kl", "KL (training)"), ("unfinished_rate", "unfinished"))  # fmt: skip


def curves(c: ReportContext) -> list[tuple[str, dict[str, Any]]]:
    """(policy, curve) of every ``<policy>_gold_curve`` stage in the run, main PPO first."""
    found = [(k[: -len(SUFFIX)], v) for k, v in c.metrics.items()
             if k.endswith(SUFFIX) and isinstance(v, dict) and v.get("points")]  # fmt: skip
    return sorted(found, key=lambda kv: (kv[0] != "ppo", kv[0]))


def merged_points(found: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One point per step with ``<policy> proxy_rm`` / ``<policy> gold`` keys: one plot for every policy."""
    by_step: dict[int, dict[str, Any]] = {}
    for name, curve in found:
        for p in curve["points"]:
            point = by_step.setdefault(p["step"], {"step": p["step"]})
            point[f"{name} proxy_rm"], point[f"{name} gold"] = p.get("proxy_rm"), p.get("gold")
    return [by_step[s] for s in sorted(by_step)]


def section_(c: ReportContext) -> str:
    found = curves(c)
    if not found:
        return ""
    labels = {"proxy_rm": "proxy RM (the main PPO's reward)", "gold": "gold"}
    lines = [(f"{n} {k}", f"{n}: {label}") for n, _ in found for k, label in labels.items()]
    body = img(plots.overopt_curve(merged_points(found), lines, None), "proxy vs gold along PPO")
    rows = [
        [n, p.get("step"), *(p.get(k) for k, _ in COLUMNS)] for n, curve in found for p in curve["points"]
    ]
    body += table(["policy", "step", *(label for _, label in COLUMNS)], rows, group_first=True)
    facts: list[tuple[str, Any]] = [("dev prompts", found[0][1].get("dev_prompts")),
                                    ("SFT's proxy score", found[0][1].get("sft_proxy_rm_score")),
                                    ("SFT's gold score", found[0][1].get("sft_gold_score"))]  # fmt: skip
    for name, curve in found:
        drop = curve.get("gold_drop") or {}
        facts.append((f"{name}: gold win rate's peak (step) and fall to the last", f"{fmt(drop.get('peak'))} "
                      f"(step {fmt(drop.get('peak_step'))}), -{fmt(drop.get('drop_from_peak'))}"))  # fmt: skip
        if curve.get("ensemble"):
            facts.append((f"{name}: reward", f"mean - {curve.get('lam')} x std of {', '.join(curve['ensemble'])} "
                          f"(SFT's: {fmt(curve.get('sft_ensemble_reward'))})"))  # fmt: skip
    body += kv_table(facts)
    intro = (
        "Each policy's snapshots (ppo.snapshot_every) answer the dev prompts (never the evaluation "
        "prompts), greedy; win rates are against SFT's answers (ties 1/2) by the proxy RM the main PPO "
        "climbed and by the gold judge. Over-optimisation (Gao et al. 2022) is the proxy rising while gold "
        "stays flat or falls; the pessimistic twin climbs an ensemble's mean - lam x std instead of the RM."
    )
    return section("Over-optimisation: proxy vs gold along PPO (dev prompts)", intro, body)
