"""evaluate_models on tiny local models: both answer every prompt, verdicts, files, length stats."""

from __future__ import annotations

import json

import pytest

from chatglm_rlhf.data.schema import DialogueSample, Turn
from chatglm_rlhf.evaluate.evaluate import diversity_stats, evaluate_models, judge_responses, length_stats
from chatglm_rlhf.evaluate.judges import RewardJudge
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer

TEXTS = [f"What is {a} plus {b}? The answer is {a + b}." for a in range(10) for b in range(10)]


class LengthScorer:
    def score(self, samples, responses):
        return [float(len(r)) for r in responses]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300)


def _model(tok, seed):
    return build_tiny_model(tok, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, seed=seed)


PROMPTS = [
    DialogueSample(id="p1", prompt="What is 1 plus 2?", category="math"),
    DialogueSample(id="p2", prompt="What is 3 plus 4?", category="math"),
    DialogueSample(id="p3", prompt="What is 5 plus 5?", category="chat",
                   history=[Turn("user", "hi"), Turn("assistant", "The answer is 2.")]),
]  # fmt: skip
SETTINGS = GenerationSettings(max_new_tokens=8, greedy=True, batch_size=2)


def test_same_model_greedy_is_all_ties(tok):
    model = _model(tok, 0)
    result = evaluate_models(model, model, tok, PROMPTS, RewardJudge(LengthScorer()), SETTINGS, bootstrap=50)
    assert result.verdicts == ["tie"] * 3
    assert all(r["policy"] == r["baseline"] for r in result.records)
    assert result.summary["overall"]["win_rate"] == 0.5
    assert result.summary["mean_score"]["policy"] == result.summary["mean_score"]["baseline"]


def test_two_models_counts_files_and_lengths(tok, tmp_path):
    pol, base = _model(tok, 1), _model(tok, 2)
    result = evaluate_models(
        pol, base, tok, PROMPTS, RewardJudge(LengthScorer()), SETTINGS, bootstrap=50, output_dir=tmp_path
    )
    s = result.summary
    assert s["n"] == 3 and s["overall"]["win"] + s["overall"]["tie"] + s["overall"]["loss"] == 3
    assert set(s["per_category"]) == {"math", "chat"} and s["per_category"]["math"]["n"] == 2
    # the verdicts follow the judge: longer answer wins
    for r in result.records:
        expected = (
            "a"
            if len(r["policy"]) > len(r["baseline"])
            else "b"
            if len(r["policy"]) < len(r["baseline"])
            else "tie"
        )
        assert r["verdict"] == expected
    pol_lens = [len(r["policy"]) for r in result.records]
    assert s["lengths"]["policy"]["mean_chars"] == pytest.approx(sum(pol_lens) / 3)
    assert s["lengths"]["policy"]["max_chars"] == max(pol_lens)
    assert 0.0 <= s["lengths"]["baseline"]["unfinished_rate"] <= 1.0
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["overall"]["n"] == 3 and saved["responses_path"] == "responses.jsonl"
    lines = (tmp_path / "responses.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["p1", "p2", "p3"]
    assert json.loads(lines[2])["history"][0] == {"role": "user", "content": "hi"}


def test_judge_responses_without_models():
    result = judge_responses(PROMPTS, ["long answer", "a", "same"], ["b", "long answer", "same"],
                             RewardJudge(LengthScorer()), bootstrap=20)  # fmt: skip
    assert result.verdicts == ["a", "b", "tie"]
    assert [r["outcome"] for r in result.records] == ["win", "loss", "tie"]
    assert result.records[0]["policy_score"] == 11.0


def test_length_stats_known_values():
    s = length_stats(["ab", "abcd", "", "one two three"], [True, True, False, True])
    assert s["n"] == 4 and s["mean_chars"] == pytest.approx((2 + 4 + 0 + 13) / 4)
    assert s["max_words"] == 3 and s["empty"] == 1 and s["unfinished_rate"] == 0.25
    assert length_stats([]) == {"n": 0}


def test_diversity_stats_spots_a_collapsed_policy():
    collapsed = diversity_stats(["Sorry, I can't.", "Sorry,  I can't.", "Sorry, I can't.", "Paris."])
    assert collapsed["distinct"] == 2 and collapsed["distinct_share"] == 0.5  # whitespace is not a difference
    assert collapsed["top_response"] == "Sorry, I can't." and collapsed["top_response_share"] == 0.75
    varied = diversity_stats(["a", "b", "c"])
    assert varied["distinct_share"] == 1.0 and varied["top_response_share"] == pytest.approx(1 / 3)
    assert diversity_stats([]) == {"n": 0}
