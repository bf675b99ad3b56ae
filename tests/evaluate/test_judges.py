"""Judges: score-based ties, the gold adapter, and the both-orders LLM judge cancelling position bias."""

from __future__ import annotations

import pytest

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.evaluate.judges import (
    BothOrdersJudge,
    GoldJudgeAdapter,
    LLMJudge,
    RewardJudge,
    combine_orders,
    judge_pairs,
    parse_verdict,
    verdict_from_scores,
)
from chatglm_rlhf.models.generation import Generated
from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer

S = [DialogueSample(id=str(i), prompt=f"question {i}?") for i in range(4)]


class LengthScorer:
    def __init__(self):
        self.calls = 0

    def score(self, samples, responses):
        self.calls += 1
        assert len(samples) == len(responses)
        return [float(len(r)) for r in responses]


def test_verdict_from_scores_threshold():
    assert verdict_from_scores(1.0, 0.0) == "a"
    assert verdict_from_scores(0.0, 1.0) == "b"
    assert verdict_from_scores(1.0, 1.0) == "tie"
    assert verdict_from_scores(1.05, 1.0, tie_threshold=0.1) == "tie"
    assert verdict_from_scores(1.2, 1.0, tie_threshold=0.1) == "a"


def test_reward_judge_one_batched_call_and_ties():
    scorer = LengthScorer()
    judge = RewardJudge(scorer, tie_threshold=2)
    out = judge_pairs(judge, S, ["long answer", "x", "abc", "abcd"], ["short", "xxxxxx", "abcd", "abc"])
    assert out == ["a", "b", "tie", "tie"]
    assert scorer.calls == 1
    assert judge.last_scores == ([11.0, 1.0, 3.0, 4.0], [5.0, 6.0, 4.0, 3.0])


def test_gold_adapter_uses_compare_or_score():
    class CompareOnly:
        def compare(self, sample, a, b, tie_margin=0.05):
            return "tie" if tie_margin > 1 else ("a" if a > b else "b")

    class ScoreOnly:
        def score(self, samples, responses):
            return [float(r == "good") for r in responses]

    assert GoldJudgeAdapter(CompareOnly()).compare(S[0], "z", "a") == "a"
    assert GoldJudgeAdapter(CompareOnly(), tie_threshold=5).compare(S[0], "z", "a") == "tie"
    judge = GoldJudgeAdapter(ScoreOnly())
    assert judge.compare_many(S[:2], ["good", "bad"], ["bad", "good"]) == ["a", "b"]
    assert judge.last_scores == ([1.0, 0.0], [0.0, 1.0])
    with pytest.raises(TypeError):
        GoldJudgeAdapter(object())


def test_combine_orders():
    # first ask shows (a, b) as (A, B); second shows (b, a)
    assert combine_orders("A", "B") == "a"
    assert combine_orders("B", "A") == "b"
    assert combine_orders("A", "A") == "tie"  # position bias
    assert combine_orders("B", "B") == "tie"
    assert combine_orders(None, "B") == "tie"
    assert combine_orders("tie", "tie") == "tie"


def test_always_a_judge_gives_only_ties():
    judge = BothOrdersJudge(lambda samples, first, second: ["A"] * len(samples))
    out = judge_pairs(judge, S, ["good", "bad", "x", "y"], ["bad", "good", "y", "x"])
    assert out == ["tie"] * 4
    assert judge.agreement_rate == 0.0
    assert judge.describe()["first_position_rate"] == 1.0


def test_consistent_judge_wins_in_both_orders():
    def ask(samples, first, second):
        return ["A" if "good" in f else "B" for f, s in zip(first, second)]

    judge = BothOrdersJudge(ask)
    assert judge_pairs(judge, S[:2], ["good one", "meh"], ["meh", "good one"]) == ["a", "b"]
    assert judge.agreement_rate == 1.0


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("A", "A"),
        ("B.", "B"),
        (" (B) is better", "B"),
        ("A is better because it is correct.", "A"),
        ("[[B]]", "B"),
        ("My verdict: [[A]]", "A"),
        ("Answer B is better.", "B"),
        ("A better answer is Answer B.", "B"),
        ("tie", "tie"),
        ("[[tie]]", "tie"),
        ("A good question.", None),
        ("I cannot decide", None),
        ("", None),
    ],
)
def test_parse_verdict(reply, expected):
    assert parse_verdict(reply) == expected


@pytest.fixture(scope="module")
def tok():
    texts = [
        "Which answer is better? Reply with a single letter: A or B.",
        "Answer A",
        "Answer B",
        "tie",
    ] * 20
    return train_tokenizer(texts, vocab_size=300)


class FakeGenerator:
    """Answers every prompt with the same text; records the prompts it was given."""

    def __init__(self, tok, reply):
        self.tok, self.reply, self.prompts = tok, reply, []

    def generate(self, prompts, num_return, settings, seed=None):
        assert settings.greedy and num_return == 1
        self.prompts += prompts
        ids = self.tok.encode(self.reply, add_special_tokens=False) + [self.tok.eos_token_id]
        return [[Generated(p, ids, True)] for p in prompts]


def test_llm_judge_always_a_is_all_ties_and_asks_both_orders(tok):
    gen = FakeGenerator(tok, "A")
    judge = LLMJudge(None, tok, generator=gen)
    out = judge_pairs(judge, S[:2], ["first answer", "apple"], ["second answer", "pear"])
    assert out == ["tie", "tie"]
    assert judge.agreement_rate == 0.0 and judge.unparsed == 0
    texts = [tok.decode(p) for p in gen.prompts]
    assert len(texts) == 4
    # ask 1 shows a then b; ask 2 (the second half) shows b then a
    assert texts[0].index("first answer") < texts[0].index("second answer")
    assert texts[2].index("second answer") < texts[2].index("first answer")
    assert "question 0?" in texts[0] and texts[0].endswith("<|assistant|>\n")


def test_llm_judge_unreadable_replies_are_ties(tok):
    judge = LLMJudge(None, tok, generator=FakeGenerator(tok, "hmm"))
    assert judge.compare(S[0], "x", "y") == "tie"
    assert judge.unparsed == 2 and judge.raw_replies == ["hmm", "hmm"]


def test_llm_judge_runs_a_real_tiny_model(tok):
    model = build_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    judge = LLMJudge(model, tok, max_new_tokens=3, max_prompt_tokens=200)
    out = judge_pairs(judge, S[:3], ["a1", "a2", "a3"], ["b1", "b2", "b3"])
    assert len(out) == 3 and set(out) <= {"a", "b", "tie"}
    assert judge.pairs == 3 and len(judge.raw_replies) == 6


def test_gold_adapter_on_the_demo_gold_judge():
    judge_mod = pytest.importorskip("chatglm_rlhf.tasks.demo.judge")
    world = pytest.importorskip("chatglm_rlhf.tasks.demo.world")
    samples = world.DemoWorld(seed=0).prompts("eval", 3)
    good = [s.meta["gold"].get("reference") or "Sorry, I can't help with that." for s in samples]
    judge = GoldJudgeAdapter(judge_mod.GoldJudge())
    assert judge_pairs(judge, samples, good, ["I do not know."] * 3) == ["a"] * 3
    assert judge_pairs(judge, samples, good, good) == ["tie"] * 3
    assert len(judge.last_scores[0]) == 3
