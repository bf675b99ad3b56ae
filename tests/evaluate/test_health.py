"""Collapse and weak-RM checks, on hand-made metrics."""

from chatglm_rlhf.evaluate.health import collapse_warnings, top_shares, weak_judge_warnings, weak_rm_warnings


def test_top_shares_and_collapse_per_category():
    records = [{"category": "count", "policy": "A", "baseline": f"b{i}"} for i in range(4)]
    records += [{"category": "harmful", "policy": "No.", "baseline": "No."} for _ in range(4)]
    s = top_shares(records)
    assert s == {"count": {"policy": 1.0, "sft": 0.25}, "harmful": {"policy": 1.0, "sft": 1.0}}
    warn = collapse_warnings("PPO", {"top_response_share_by_category": s})
    assert len(warn) == 1 and "count" in warn[0]  # one refusal for every harmful prompt is fine
    ok = {"top_response_share_by_category": {"count": {"policy": 0.12, "sft": 0.10}}}
    assert collapse_warnings("PPO", ok) == []  # within SFT's share + 5 points


def test_top_shares_name_the_answer_and_its_score_where_it_was_given():
    records = [{"category": "end_mark", "policy": "Corn!", "baseline": f"b{i}", "policy_score": sc}
               for i, sc in enumerate([1.0, 1.0, 0.0, 1.0])]  # fmt: skip
    records.append({"category": "end_mark", "policy": "Red!", "baseline": "b", "policy_score": 0.0})
    s = top_shares(records)["end_mark"]
    assert s["policy"] == 0.8 and s["top"] == "Corn!" and s["top_score"] == 0.75
    (warn,) = collapse_warnings("PPO", {"top_response_share_by_category": {"end_mark": s}})
    assert "'Corn!', mean score 0.75 where given" in warn


def test_weak_rm_warnings_name_each_probe():
    rm = {
        "gold_accuracy": 0.62,
        "filler_probe": {"longer_wins": 0.9},
        "refusal_probe": {"refusal_preferred": 0.5},
    }
    warn = weak_rm_warnings("the RM", rm)
    assert len(warn) == 3 and "62%" in warn[0] and "filler" in warn[1] and "refusal" in warn[2]
    assert weak_rm_warnings("the RM", {"gold_accuracy": 0.8, "filler_probe": {"longer_wins": 0.5}}) == []


def test_weak_judge_warning_when_the_heldout_interval_reaches_a_coin():
    weak = {"heldout": {"n": 240, "accuracy": 0.5625, "ci95": [0.499, 0.624]}}
    (line,) = weak_judge_warnings("judge_rm", weak)
    assert "judge_rm" in line and "56% of 240" in line and "50%-62%" in line
    assert (
        weak_judge_warnings("judge_rm_2", {"heldout": {"n": 240, "accuracy": 0.61, "ci95": [0.546, 0.667]}})
        == []
    )
    assert weak_judge_warnings("rm", {}) == []  # no held-out pairs: nothing to say


def test_a_repeated_right_answer_is_a_note_and_a_repeated_worse_answer_is_collapse():
    """Issue 29's rule: share over max(SFT + 5 points, 10%) *and* the answer's mean gold below SFT's."""
    from chatglm_rlhf.evaluate.health import repeated_notes

    def recs(cat, answer, score, sft_score):
        return [{"category": cat, "policy": answer, "baseline": f"s{i}", "policy_score": score,
                 "baseline_score": sft_score} for i in range(5)]  # fmt: skip

    shares = top_shares(recs("vegetable", "Carrot.", 1.0, 0.6) + recs("count", "Yes!", 0.1, 0.5))
    assert shares["vegetable"]["sft_score"] == 0.6 and shares["count"]["top_score"] == 0.1
    ev = {"top_response_share_by_category": shares}
    (warn,) = collapse_warnings("PPO", ev)
    assert "count" in warn and "'Yes!', mean score 0.10 where given vs SFT's 0.50" in warn
    (note,) = repeated_notes("PPO", ev)
    assert "vegetable" in note and "'Carrot.'" in note and "not counted as collapse" in note
    equal = {"top_response_share_by_category": {"x": {"policy": 0.5, "sft": 0.1, "top": "a", "top_score": 0.5,
                                                      "sft_score": 0.5}}}  # fmt: skip
    assert collapse_warnings("PPO", equal) == [] and len(repeated_notes("PPO", equal)) == 1  # not below SFT
