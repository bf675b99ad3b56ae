"""scripts/length_tie_probe.py's pair builder on hand-picked answers (no model: generation is replaced)."""

import random

from chatglm_rlhf.tasks.demo.demonstrations import response_for
from chatglm_rlhf.tasks.demo.judge import GoldJudge
from chatglm_rlhf.tasks.demo.world import DemoWorld


def test_pairs_are_gold_ties_of_different_lengths_each_once(monkeypatch, repo_script):
    mod = repo_script("scripts/length_tie_probe.py")
    world, judge = DemoWorld(0), GoldJudge()
    prompts = [s for s in world.prompts("eval", mod.N_PROMPTS) if s.category == "lookalike"][:3]
    monkeypatch.setattr(world, "prompts", lambda split, n: prompts)
    good = [response_for(s, "good", random.Random(0)) for s in prompts]
    # Four "samples" per prompt: the good answer twice, once with filler, once refused.
    per_sample = [
        good,
        good,
        ["Sure! " + g for g in good],
        [response_for(s, "refuse", random.Random(0)) for s in prompts],
    ]
    calls = iter(per_sample)

    import chatglm_rlhf.evaluate.evaluate as ev

    monkeypatch.setattr(ev, "generate_responses", lambda *a, **k: (next(calls), [True] * len(prompts)))
    pairs = mod.tie_pairs(world, judge, None, None, None, seed=0)
    # Per prompt only good vs "Sure! " + good is a tie of different lengths (good vs good: same length;
    # the refusal: no tie), and the two identical good answers give that pair once.
    assert len(pairs) == len(prompts)
    assert all({p.response_a, p.response_b} == {g, "Sure! " + g} for p, g in zip(pairs, good))
    assert all(p.label == "tie" for p in pairs)
