"""The report's feedback-rounds rows: gold's verdicts in the demo world, the judge RM's without gold."""

from __future__ import annotations

from chatglm_rlhf.evaluate.report.rounds import round_rows, terminal_lines


def test_rounds_without_gold_use_the_judge_rm_and_count_round_1_from_the_merge():
    metrics = {
        "round_2": {"policy": "ppo", "comparisons": 6, "comparisons_total": 20, "select": "random"},
        "evaluate": {"ppo": {"judge_rm": {"win_rate": 0.25}}, "ppo_r2": {"judge_rm": {"win_rate": 0.75}}},
    }
    rows = round_rows(metrics)
    assert [(r["judge"], r["win_vs_sft"], r["comparisons"]) for r in rows] == [
        ("judge RM", 0.25, 14), ("judge RM", 0.75, 6)]  # fmt: skip
    assert terminal_lines(metrics)[1].endswith("ppo_r2 judge RM win vs SFT 0.750, vs round 1 -")


def test_rounds_with_gold_keep_gold_even_where_a_judge_rm_exists():
    metrics = {
        "data": {"comparisons": 40},
        "round_2": {"policy": "ppo", "comparisons": 12, "comparisons_total": 52},
        "evaluate": {"ppo": {"gold_win_rate_vs_sft": 0.6, "judge_rm": {"win_rate": 0.1}},
                     "ppo_r2": {"gold_win_rate_vs_sft": 0.7}},
    }  # fmt: skip
    rows = round_rows(metrics)
    assert [(r["judge"], r["win_vs_sft"], r["comparisons"]) for r in rows] == [
        ("gold", 0.6, 40),
        ("gold", 0.7, 12),
    ]
