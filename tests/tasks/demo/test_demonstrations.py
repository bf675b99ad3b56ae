"""SFT demonstrations: the default mixture, what each mode means to the gold judge, reproducibility."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.tasks.demo.demonstrations import (
    DEFAULT_MIX,
    GOOD_MODES,
    RESPONSE_MODES,
    expected_mode_shares,
    make_sft_data,
    resolve_mix,
    response_for,
)
from chatglm_rlhf.tasks.demo.judge import GoldJudge
from chatglm_rlhf.tasks.demo.world import CATEGORIES, DemoWorld

JUDGE = GoldJudge()


@pytest.fixture(scope="module")
def demos():
    return make_sft_data(DemoWorld(0), 4000, seed=0)


def test_mode_shares_per_category_match_default_mix(demos):
    for cat in CATEGORIES:
        modes = Counter(d.mode for d in demos if d.sample.category == cat)
        n = sum(modes.values())
        assert n > 600
        for mode, weight in DEFAULT_MIX[cat].items():
            assert modes[mode] / n == pytest.approx(weight, abs=0.045), (cat, mode)
        assert set(modes) <= set(DEFAULT_MIX[cat])  # no mode outside the category's mix


def test_mixture_leaves_room_for_rlhf(demos):
    good = sum(d.mode in GOOD_MODES for d in demos) / len(demos)
    assert 0.40 <= good <= 0.55
    assert sum(expected_mode_shares()[m] for m in GOOD_MODES) == pytest.approx(0.45)
    harmful = [d for d in demos if d.sample.category == "harmful"]
    comply = sum(d.mode == "comply" for d in harmful) / len(harmful)
    assert 0.38 < comply < 0.52  # about half comply, half refuse
    mean_gold = sum(JUDGE.score(d.sample, d.response).total for d in demos) / len(demos)
    assert 0.5 < mean_gold < 0.8  # clearly below the 1.0 a policy picking good modes reaches


def test_each_mode_means_what_it_says(demos):
    for d in demos:
        g = JUDGE.score(d.sample, d.response)
        harmful = d.sample.category == "harmful"
        if d.mode in GOOD_MODES:
            assert g.total == 1.0
        elif d.mode == "wrong":
            assert g.helpfulness < 1.0 and g.fluency == 1.0
        elif d.mode == "comply":
            assert harmful and g.harmlessness == 0.0
        elif d.mode == "repetitive":
            assert g.helpfulness == 1.0 and g.fluency < 0.6
        elif d.mode == "broken":
            assert g.fluency < 1.0
        elif d.mode == "refuse":
            assert not harmful and g.helpfulness == 0.0
    filler = [d for d in demos if d.mode == "good_filler"]
    assert all(len(d.response.split()) < 30 for d in demos)
    assert sum(len(d.response.split()) for d in filler) / len(filler) > 9


def test_same_seed_reproduces_other_seed_differs():
    world = DemoWorld(0)
    a = make_sft_data(world, 300, seed=1)
    b = make_sft_data(world, 300, seed=1)
    c = make_sft_data(world, 300, seed=2)
    assert [(x.sample.to_dict(), x.response, x.mode) for x in a] == [
        (x.sample.to_dict(), x.response, x.mode) for x in b
    ]
    assert [x.mode for x in a] != [x.mode for x in c]
    assert [x.sample.prompt for x in a] == [x.sample.prompt for x in c]  # same world, same prompts


def test_custom_mixes():
    world = DemoWorld(0)
    assert {d.mode for d in make_sft_data(world, 100, mix={"good": 1.0})} == {"good"}
    only_harm = resolve_mix({"harmful": {"comply": 1.0}})
    assert only_harm["harmful"] == {"comply": 1.0} and only_harm["facts"] == DEFAULT_MIX["facts"]
    with pytest.raises(ValueError):
        resolve_mix({"excellent": 1.0})
    with pytest.raises(ValueError):
        resolve_mix({"poetry": {"good": 1.0}})


def test_to_sample_carries_provenance_without_mutating(demos):
    d = demos[0]
    s = d.to_sample()
    assert s.responses == [d.response] and s.meta["mode"] == d.mode
    assert "mode" not in d.sample.meta and d.sample.responses == []
    assert DialogueSample.from_dict(s.to_dict()).meta["gold"] == d.sample.meta["gold"]


def test_response_for_every_mode_and_errors():
    rng = random.Random(0)
    s = DemoWorld(0).prompts("eval", 1)[0]
    for mode in RESPONSE_MODES:
        assert isinstance(response_for(s, mode, rng), str)
    with pytest.raises(ValueError, match="unknown mode"):
        response_for(s, "excellent", rng)
    with pytest.raises(ValueError, match="not a demo-world sample"):
        response_for(DialogueSample(id="x", prompt="hi", category="facts"), "good", rng)
