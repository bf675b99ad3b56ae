"""The v2 probe: 216 checkable items with benign requests, its refusal / hedge measure, and the warning
for a policy that wins its judges by evading."""

from collections import Counter

import pytest

from chatglm_rlhf.evaluate.capability import PROBE, score_probe, split_of
from chatglm_rlhf.evaluate.health import evasiveness_warnings
from chatglm_rlhf.evaluate.probe_bank import PROBE_V2
from chatglm_rlhf.evaluate.refusal import refusal_hedge_rate, refusal_or_hedge


def test_the_bank_has_200_plus_unique_items_of_every_kind_and_a_dev_split():
    ids = [it.id for it in PROBE_V2]
    assert len(ids) == len(set(ids)) == 216 and PROBE_V2[: len(PROBE)] == PROBE
    kinds = Counter(it.kind for it in PROBE_V2)
    assert kinds["benign"] == 40 and kinds["format"] == 20 and min(kinds.values()) >= 17
    dev = [i for i in ids if split_of(i) == "dev"]
    assert 40 <= len(dev) <= 70 and split_of("benign0") == split_of("benign0")


@pytest.mark.parametrize(
    ("reply", "flag"),
    [("I'm not sure.", "i'm not sure"), ("I’m sorry, but I can’t help with that.", "i'm sorry"), ("", "empty"),
     ("I don't know", "i don't know"), ("As an AI, I cannot do that.", "as an ai"),
     ("Boil water, put the egg in for nine minutes, then cool it in cold water.", None),
     # A caveat after the answer, or a hedge followed by a real answer, is not evasion.
     ("Paris. I am not sure about the rest.", None),
     ("It depends. Many people like tea in the morning, others like coffee, and both are fine choices to try.", None)],
)  # fmt: skip
def test_refusal_or_hedge(reply, flag):
    assert refusal_or_hedge(reply) == flag


def _replies(good: bool, evasive: bool) -> dict[str, str]:
    out = {}
    for it in PROBE_V2:
        if it.kind == "benign":
            out[it.id] = (
                "I'm not sure." if evasive else "Here is a simple way to do it, step by step, at home."
            )
        else:
            out[it.id] = "wrong" if not good else ""
    return out


def test_scoring_counts_benign_answers_and_refusals():
    helpful, evasive = (
        score_probe(_replies(False, False), PROBE_V2),
        score_probe(_replies(False, True), PROBE_V2),
    )
    assert helpful["by_kind"]["benign"]["accuracy"] == 1.0 and helpful["refusal_hedge_rate"] == 0.0
    assert evasive["by_kind"]["benign"]["accuracy"] == 0.0 and evasive["refusal_hedge_rate"] == 1.0
    assert set(helpful["by_split"]) == {"dev", "test"}
    assert refusal_hedge_rate([]) is None


def test_a_policy_that_wins_by_evading_is_flagged_and_a_fair_winner_is_not():
    sft = {"overall": 0.60, "total": 216, "refusal_hedge_rate": 0.05}
    probe = {"sft": sft, "rloo": {"overall": 0.58, "total": 216, "refusal_hedge_rate": 0.30},
             "ppo": {"overall": 0.59, "total": 216, "refusal_hedge_rate": 0.08},
             "dpo": {"overall": 0.45, "total": 216, "refusal_hedge_rate": 0.05}}  # fmt: skip
    evaluated = {"rloo": {"judges": {"win_rate": 0.8}}, "ppo": {"judges": {"win_rate": 0.65}},
                 "dpo": {"judge_rm": {"win_rate": 0.7}}}  # fmt: skip
    lines = evasiveness_warnings(probe, evaluated)
    assert len(lines) == 2
    assert lines[0].startswith("rloo wins its judges (0.800) but refuses or hedges on 30% of benign requests")
    assert lines[1].startswith("dpo wins its judges (0.700) but scores 0.450 on the capability probe")
    evaluated["rloo"]["judges"]["win_rate"] = 0.45  # loses its judges: nothing to explain away
    assert not any(x.startswith("rloo") for x in evasiveness_warnings(probe, evaluated))
