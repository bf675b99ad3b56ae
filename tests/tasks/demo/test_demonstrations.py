"""SFT demonstrations v2: one systematic flaw per family at the set rate; filler on good and flawed alike."""

from __future__ import annotations

import random

import pytest

from chatglm_rlhf.tasks.demo.demonstrations import (
    FLAW_RATE,
    FLAWS,
    make_ptx_data,
    make_sft_data,
    response_for,
)
from chatglm_rlhf.tasks.demo.judge import GoldJudge, strip_filler
from chatglm_rlhf.tasks.demo.world import RL_CATEGORIES, DemoWorld

JUDGE = GoldJudge()
DEMOS = make_sft_data(DemoWorld(0), 3000, seed=0)


def test_each_rl_family_is_flawed_at_the_set_rate_and_knowledge_never():
    for cat in RL_CATEGORIES:
        mine = [d for d in DEMOS if d.sample.category == cat]
        share = sum(d.mode == "flaw" for d in mine) / len(mine)
        assert len(mine) > 200 and abs(share - FLAW_RATE) < 0.07, (cat, share)  # +- 3 std errors
    assert {d.mode for d in DEMOS if d.sample.category not in RL_CATEGORIES} == {"good"}
    assert set(FLAWS) == set(RL_CATEGORIES)


def test_the_flaw_is_always_worse_than_the_good_answer_by_gold():
    for d in DEMOS[:800]:
        if d.sample.category in RL_CATEGORIES:
            good = JUDGE.score(d.sample, response_for(d.sample, "good", random.Random(1))).total
            flaw = JUDGE.score(d.sample, response_for(d.sample, "flaw", random.Random(1))).total
            assert good == 1.0 and flaw <= 0.4, (d.sample.prompt, flaw)


def test_flaws_are_about_as_long_as_good_answers():
    # Length must not give the flaw away (else no length bias is left for bucket balancing to remove).
    rng = random.Random(2)
    for cat in RL_CATEGORIES:
        mine = [d.sample for d in DEMOS if d.sample.category == cat][:100]
        mean = {
            m: sum(len(response_for(s, m, rng).split()) for s in mine) / len(mine) for m in ("good", "flaw")
        }
        assert abs(mean["flaw"] - mean["good"]) < 2.5, (cat, mean)


def test_filler_predicts_nothing():
    def filler_share(mode):
        # One-word and end-mark answers never take filler (it would break their constraint).
        mine = [d for d in DEMOS if d.mode == mode and d.sample.category not in ("one_word", "end_mark")]
        return sum(strip_filler(d.response) != d.response for d in mine) / len(mine)

    assert abs(filler_share("good") - filler_share("flaw")) < 0.05 and 0.2 < filler_share("flaw") < 0.4


def test_ptx_data_is_clean_and_seeded():
    ptx = make_ptx_data(DemoWorld(0), 300, seed=0)
    assert all(JUDGE.score(d.sample, d.response).total == 1.0 for d in ptx)
    assert [d.response for d in ptx] == [d.response for d in make_ptx_data(DemoWorld(0), 300, seed=0)]


def test_to_sample_carries_provenance_and_unknown_modes_raise():
    s = DEMOS[0].to_sample()
    assert s.responses == [DEMOS[0].response] and s.meta["mode"] == DEMOS[0].mode
    assert "mode" not in DEMOS[0].sample.meta
    with pytest.raises(ValueError, match="unknown mode"):
        response_for(DEMOS[0].sample, "wrong", random.Random(0))
