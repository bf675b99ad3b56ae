"""The demo world as a task: its probe pairs."""

from chatglm_rlhf.data.schema import DialogueSample


def test_filler_tie_pairs_on_the_demo_world():
    from chatglm_rlhf.tasks.demo import DemoWorld, GoldJudge
    from chatglm_rlhf.tasks.demo.task import filler_tie_pairs

    samples = DemoWorld(seed=0).prompts("eval", 20)
    pairs = filler_tie_pairs(samples, GoldJudge(), seed=0)
    fillable = [s for s in samples if s.category not in ("one_word", "end_mark")]  # filler breaks those
    assert len(pairs) == len(fillable) > 10
    by_id = {s.id: s for s in samples}
    for c in pairs:
        assert GoldJudge().compare(by_id[c.sample_id], c.response_a, c.response_b) == "tie"
        assert len(c.response_a) != len(c.response_b)
    assert isinstance(pairs[0].sample(), DialogueSample)
