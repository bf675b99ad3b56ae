"""The paper's-claims rules on hand-made metrics: each verdict can go either way."""

from pathlib import Path

from chatglm_rlhf.evaluate.report import claims
from chatglm_rlhf.evaluate.report.context import ReportContext


def run(ppo=0.75, dpo=0.7, stress=(0.01, 0.10), sft_probe=0.5, corr=(0.4, 0.7), collapsed=False):
    share = (
        {"policy": 0.5, "sft": 0.1, "top_score": 0.1, "sft_score": 0.5}
        if collapsed
        else {"policy": 0.1, "sft": 0.1}
    )
    m = {
        "evaluate": {
            "ppo": {"gold_win_rate_vs_sft": ppo, "top_response_share_by_category": {"count": share}},
            "dpo": {"gold_win_rate_vs_sft": dpo},
        },
        "ppo": {"reward_train_std": 0.4},
        "ppo_nobaseline": {"reward_train_std": 0.6},
        "probe": {
            "sft": {"by_split": {"test": sft_probe}},
            "ppo_stress": {"by_split": {"test": sft_probe - stress[0]}, "overall": 0.0},
            "ppo_stress_noptx": {"by_split": {"test": sft_probe - stress[1]}},
        },
        "rm": {"length_correlation": corr[0], "gold_accuracy": 0.8},
        "rm_nobalance": {"length_correlation": corr[1], "gold_accuracy": 0.78},
    }
    return claims.figures(ReportContext(Path("."), m, {}))


def verdicts(runs):
    return [r["shown"] for r in claims.judge(runs)]


def test_every_claim_shown_then_each_one_failing():
    assert verdicts([run(), run(stress=(0.0, 0.12)), run(stress=(0.02, 0.08))]) == [True] * 4
    # a collapsed category in one seed fails the headline even with high win rates
    assert verdicts([run(), run(collapsed=True), run()])[0] is False
    assert verdicts([run(dpo=0.6), run(dpo=0.6), run(dpo=0.6)])[0] is False
    # forgetting within the seed spread is not shown (mean 0.05, sd 0.087: 2 x sd > mean)
    assert verdicts([run(stress=(0.0, 0.15)), run(stress=(0.0, 0.0)), run(stress=(0.0, 0.0))])[2] is False
    # ptx that prevents less than half of the drop is not shown
    assert verdicts([run(stress=(0.06, 0.1)), run(stress=(0.06, 0.1))])[2] is False
    # the sign of the correlation does not matter, its size does
    assert verdicts([run(corr=(-0.8, 0.7))])[3] is False


def test_a_claim_whose_ablation_did_not_run_says_how_to_run_it():
    figs = run()
    figs["fed_std"] = (0.4, None)
    row = claims.judge([figs])[1]
    assert row["shown"] is None and claims.verdict(row) == "not run (ablations=[baseline])"
    table = claims.markdown(claims.judge([figs]), 1)
    assert table.count("\n") == 5 and "| not run (ablations=[baseline]) |" in table
