"""Feedback rounds (``rounds=N``): per round, whose answers were annotated, how many comparisons, how
much the annotators agreed, how blind the reward model was on the policy's own answers before it was
retrained, and the round's policy against SFT and against the round before it."""

from __future__ import annotations

from typing import Any

from chatglm_rlhf.evaluate.report.context import ReportContext, get


def round_rows(metrics: dict) -> list[dict[str, Any]]:
    """One row per round (none for a one-round run); round 1 is the run's own collect / rm / ppo."""
    n = 1
    while isinstance(get(metrics, f"round_{n + 1}"), dict):
        n += 1
    if n == 1:
        return []
    rows = [{
        "round": 1, "answers_from": "sft", "comparisons": get(metrics, "data.comparisons"),
        "annotator_agreement": get(metrics, "filter.pair_agreement"), "previous_rm_on_these_answers": None,
        "rm": "rm", "rm_gold_accuracy": get(metrics, "rm.gold_accuracy"), "policy": "ppo",
        "gold_win_vs_sft": get(metrics, "evaluate.ppo.gold_win_rate_vs_sft"), "gold_win_vs_previous": None,
    }]  # fmt: skip
    for r in range(2, n + 1):
        rd, policy = get(metrics, f"round_{r}"), f"ppo_r{r}"
        rows.append({
            "round": r, "answers_from": rd.get("policy"), "comparisons": rd.get("comparisons"),
            "annotator_agreement": rd.get("annotator_agreement"),
            "previous_rm_on_these_answers": rd.get("rm_on_policy_gold_accuracy"),
            "rm": f"rm_r{r}", "rm_gold_accuracy": get(metrics, f"rm_r{r}.gold_accuracy"), "policy": policy,
            "gold_win_vs_sft": get(metrics, f"evaluate.{policy}.gold_win_rate_vs_sft"),
            "gold_win_vs_previous": get(metrics, f"evaluate.{policy}.gold_win_rate_vs_versus"),
            "select": rd.get("select"),
        })  # fmt: skip
    return _judged(metrics, rows)


def _judged(metrics: dict, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's ``judge`` and ``win_vs_sft``: gold's where the task has it, else the judge RM's (the files
    profile, where people annotate each round); there, round 1's comparisons are those the RM trained on."""
    gold = any(r["gold_win_vs_sft"] is not None for r in rows)
    for r in rows:
        judged = get(metrics, f"evaluate.{r['policy']}.judge_rm.win_rate")
        r["judge"], r["win_vs_sft"] = (
            ("gold", r["gold_win_vs_sft"]) if gold or judged is None else ("judge RM", judged)
        )
    if rows[0]["comparisons"] is None and isinstance(get(metrics, "round_2.comparisons_total"), int):
        rows[0]["comparisons"] = get(metrics, "round_2.comparisons_total") - (
            get(metrics, "round_2.comparisons") or 0
        )
    return rows


def terminal_lines(metrics: dict) -> list[str]:
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    return [
        f"round {r['round']}: {r['comparisons']} comparisons on {r['answers_from']}'s answers"
        + (f" ({r['select']})" if r.get("select") else "")
        + (f", the previous RM's gold accuracy on {r['answers_from']}'s answers {f(r['previous_rm_on_these_answers'])}" if r["round"] > 1 else "")
        + f"; {r['policy']} {r['judge']} win vs SFT {f(r['win_vs_sft'])}"
        + (f", vs round {r['round'] - 1} {f(r['gold_win_vs_previous'])}" if r["round"] > 1 else "")
        for r in round_rows(metrics)
    ]  # fmt: skip


def section_(c: ReportContext) -> str:
    from chatglm_rlhf.evaluate.report.html import section, table

    rows = round_rows(c.metrics)
    if not rows:
        return ""
    head = ["round", "answers annotated", "comparisons", "annotator agreement", "previous RM's gold accuracy on "
            "them", "reward model", "its gold accuracy", "policy", "gold win vs SFT", "vs the round before"]  # fmt: skip
    body = [[r["round"], r["answers_from"] + (f" ({r['select']})" if r.get("select") else ""), r["comparisons"],
             r["annotator_agreement"], r["previous_rm_on_these_answers"], r["rm"], r["rm_gold_accuracy"],
             r["policy"], r["win_vs_sft"], r["gold_win_vs_previous"]] for r in rows]  # fmt: skip
    # No gold judge (the files profile): the judge RM's verdicts, never a reward nor trained on by the policy.
    if rows[0]["judge"] != "gold":
        head[-2] = f"{rows[0]['judge']} win vs SFT"
    intro = (
        "Round 1 is the usual run. Each later round annotates the previous round's policy's answers, retrains "
        "the reward model on every round's comparisons (from the SFT model) and continues PPO from that "
        "policy with its KL to SFT. 'Previous RM's gold accuracy on them': how well the reward model the "
        "policy was trained on ranked that policy's own answers (where gold decides), before retraining."
    )
    return section("Feedback rounds", intro, table(head, body))
