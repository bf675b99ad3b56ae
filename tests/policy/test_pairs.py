import pytest

from chatglm_rlhf.data.schema import DialogueSample, Turn
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.models.generation import Generated, GenerationSettings
from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer
from chatglm_rlhf.policy.dpo.pairs import pairs_from_policy

CANDIDATES = {
    "p0": ["The answer is 5.", "It is 9.", "The answer is 5, I think so."],
    "p1": ["Paris.", "Paris!", "Paris?"],  # scores within 0.05: skipped at min_spread 0.1
    "p2": ["no", "no", "no"],  # identical: no preference whatever the threshold
}
SCORES = {
    "The answer is 5.": 1.0,
    "It is 9.": -1.0,
    "The answer is 5, I think so.": 0.5,
    "Paris.": 0.50,
    "Paris!": 0.52,
    "Paris?": 0.48,
    "no": 0.0,
}


class FakeScorer:
    def __init__(self, table=None, broken=None):
        self.table, self.broken, self.calls = table or SCORES, broken, 0

    def score(self, samples, responses):
        self.calls += 1
        assert len(samples) == len(responses)
        if self.broken == "short":
            return [0.0]
        if self.broken == "nan":
            return [float("nan")] * len(responses)
        return [self.table[r] for r in responses]


class FakeGenerator:
    """Returns the scripted candidates of each prompt (decoded text -> ids with the tokenizer)."""

    def __init__(self, tok, samples, unfinished=()):
        self.tok, self.samples, self.unfinished = tok, samples, set(unfinished)

    def generate(self, prompts, num_return, settings, seed=None):
        out = []
        for s, p in zip(self.samples, prompts):
            texts = CANDIDATES[s.id][:num_return]
            ids = [self.tok.encode(t, add_special_tokens=False) for t in texts]
            out.append([Generated(p, i + [self.tok.eos_token_id], s.id not in self.unfinished) for i in ids])
        return out


@pytest.fixture(scope="module")
def tok():
    texts = [t for cands in CANDIDATES.values() for t in cands] + ["What is 2 + 3?", "Capital of France?"]
    return train_tokenizer(texts * 3, vocab_size=300)


def _samples():
    return [
        DialogueSample("p0", "What is 2 + 3?", category="arithmetic"),
        DialogueSample("p1", "Capital of France?", history=[Turn("user", "hi"), Turn("assistant", "hello")]),
        DialogueSample("p2", "Say no."),
    ]


def test_best_vs_worst_and_spread_filter(tok):
    samples = _samples()
    pairs, stats = pairs_from_policy(
        None, tok, samples, FakeScorer(), k=3, min_spread=0.1, generator=FakeGenerator(tok, samples)
    )
    assert [p.sample_id for p in pairs] == ["p0"]
    p = pairs[0]
    assert (p.chosen, p.rejected, p.label) == ("The answer is 5.", "It is 9.", "a")
    assert p.scores == {"a": {"reward": 1.0}, "b": {"reward": -1.0}}
    assert p.meta["spread"] == pytest.approx(2.0) and p.meta["k"] == 3
    assert p.category == "arithmetic"
    assert (stats.prompts, stats.candidates, stats.pairs, stats.skipped_small_spread) == (3, 9, 1, 2)
    assert stats.skipped_ids == ["p1", "p2"]
    assert stats.mean_spread == pytest.approx(2.0)
    assert stats.mean_chosen_chars == len("The answer is 5.")


def test_min_spread_zero_keeps_small_but_not_zero_spreads(tok):
    samples = _samples()
    pairs, stats = pairs_from_policy(
        None, tok, samples, FakeScorer(), k=3, min_spread=0.0, generator=FakeGenerator(tok, samples)
    )
    assert [p.sample_id for p in pairs] == ["p0", "p1"]
    assert (pairs[1].chosen, pairs[1].rejected) == ("Paris!", "Paris?")
    assert [(t.role, t.content) for t in pairs[1].history] == [("user", "hi"), ("assistant", "hello")]
    assert stats.skipped_ids == ["p2"]  # identical scores carry no preference


def test_unfinished_candidates_are_counted(tok):
    samples = _samples()
    pairs, stats = pairs_from_policy(
        None, tok, samples, FakeScorer(), k=3, generator=FakeGenerator(tok, samples, unfinished=["p0"])
    )
    assert stats.unfinished == 3
    assert pairs[0].meta["finished_a"] is False


@pytest.mark.parametrize("broken, match", [("short", "1 scores for 9"), ("nan", "non-finite")])
def test_bad_scorer_output_raises(tok, broken, match):
    samples = _samples()
    with pytest.raises(UserError, match=match):
        pairs_from_policy(
            None, tok, samples, FakeScorer(broken=broken), k=3, generator=FakeGenerator(tok, samples)
        )


def test_k_below_two_raises(tok):
    with pytest.raises(UserError, match="k must be >= 2"):
        pairs_from_policy(None, tok, _samples(), FakeScorer(), k=1)


def test_real_sampling_from_a_tiny_model(tok):
    model = build_tiny_model(tok, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2)

    class LengthScorer:
        def score(self, samples, responses):
            return [float(len(r)) for r in responses]

    settings = GenerationSettings(max_new_tokens=12, batch_size=8)
    samples = _samples()
    pairs, stats = pairs_from_policy(model, tok, samples, LengthScorer(), k=4, settings=settings, seed=3)
    assert stats.candidates == 12
    assert stats.pairs + stats.skipped_small_spread == 3
    assert stats.pairs >= 1  # a random model's samples differ in length
    for p in pairs:
        assert len(p.chosen) > len(p.rejected)
        assert p.scores["a"]["reward"] == len(p.chosen)
