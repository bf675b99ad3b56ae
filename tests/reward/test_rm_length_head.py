"""ODIN's length head: the loss terms on hand-made numbers, and a trained RM whose quality head ignores
a length cue that its length head takes."""

import random

import pytest
import torch

from chatglm_rlhf.data.schema import Comparison
from chatglm_rlhf.models.tiny import make_tiny_checkpoint
from chatglm_rlhf.reward.losses import head_orthogonality, length_decorrelation, pearson
from chatglm_rlhf.reward.model import head_scores, load_reward_model, read_info
from chatglm_rlhf.reward.scorer import RewardScorer
from chatglm_rlhf.reward.trainer import (
    RMConfig,
    RMTrainer,
    collate_pairs,
    encode_pairs,
    pairs_from_comparisons,
)

WORDS = "apple banana cherry grape lemon mango orange pear peach plum".split()


def test_the_terms_by_hand():
    L = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert pearson(L, 2 * L + 1).item() == pytest.approx(1.0)
    assert pearson(L, torch.tensor([1.0, 1.0, 1.0, 1.0])).item() == 0.0  # constant: no correlation
    # quality anti-correlated with length (|-1| = 1), length head perfectly correlated (1): 1 - 1 = 0
    assert length_decorrelation(-L, L, L).item() == pytest.approx(0.0, abs=1e-6)
    # quality carries length, the length head carries none: the worst case, 1 - 0
    assert length_decorrelation(L, torch.tensor([0.0, 1.0, 1.0, 0.0]), L).item() == pytest.approx(1.0)
    assert head_orthogonality(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])).item() == pytest.approx(0.0)
    assert head_orthogonality(torch.tensor([1.0, 1.0]), torch.tensor([-2.0, -2.0])).item() == pytest.approx(
        1.0
    )


def length_biased(n, seed):
    """The chosen answer names the asked fruit (quality) and is also longer in 80% of pairs (a length
    cue that is not quality); in 20% the rejected one is the longer."""
    rng, out = random.Random(seed), []
    for i in range(n):
        fruit, other = rng.sample(WORDS, 2)
        pad = " ".join(rng.choices(WORDS, k=4))
        good, bad = (
            (f"{fruit} yes {pad}", f"{other} no")
            if rng.random() < 0.8
            else (f"{fruit} yes", f"{other} no {pad}")
        )
        out.append(Comparison(f"s{i}", f"Which fruit: {fruit}?", good, bad, "a"))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("odin")
    texts = [f"{c.prompt} {c.response_a} {c.response_b}" for c in length_biased(200, 9)]
    tiny = str(make_tiny_checkpoint(root / "tiny", texts, vocab_size=300, hidden_size=32))
    cfg = RMConfig(model=tiny, output_dir=str(root / "rm"), lr=3e-3, batch_size=16, epochs=6, max_length=48,
                   progress=False, warmup_ratio=0.0, lr_schedule="constant", length_head=True, length_coef=0.3, seed=0)  # fmt: skip
    trainer = RMTrainer(cfg)
    trainer.train(pairs_from_comparisons(length_biased(200, 1)))
    return root, trainer


def test_a_length_head_rm_saves_two_heads_and_scores_with_the_quality_one(trained):
    root, trainer = trained
    assert read_info(root / "rm")["heads"] == 2
    model, tok = load_reward_model(str(root / "rm"))
    test = length_biased(60, 5)
    b = collate_pairs(encode_pairs(tok, pairs_from_comparisons(test), 48), tok.pad_token_id)
    with torch.no_grad():
        heads = head_scores(model, b["input_ids"], b["attention_mask"])
    assert heads.shape == (120, 2)
    scorer = RewardScorer.from_pretrained(str(root / "rm"), device="cpu", max_length=48)
    r_a, r_b = scorer.score_comparisons(test)
    assert torch.allclose(torch.tensor(r_a + r_b), heads[:, 0], atol=1e-4)  # the reward is head 0
    lengths = b["lengths"]
    q, ln = pearson(heads[:, 0], lengths).item(), pearson(heads[:, 1], lengths).item()
    assert ln > 0.4 and abs(q) < ln / 2  # length went to the length head, not the quality head
    acc = sum(a > b_ for a, b_ in zip(r_a, r_b)) / len(test)
    assert acc >= 0.75  # the quality head still ranks by the fruit (a plain RM here: 1.0; length_coef
    # 1.0 drives it to chance, since in this data the right answer is also the longer one 80% of the time)
