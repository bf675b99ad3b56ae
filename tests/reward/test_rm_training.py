"""Reward-model training on tiny local models: it learns a planted preference, and its plumbing holds."""

import json
import random

import pytest
import torch

from chatglm_rlhf.data.schema import Comparison
from chatglm_rlhf.models.tiny import make_tiny_checkpoint
from chatglm_rlhf.reward.model import load_reward_model, rewards
from chatglm_rlhf.reward.scorer import RewardScorer
from chatglm_rlhf.reward.trainer import (
    RMConfig,
    RMTrainer,
    collate_pairs,
    encode_pairs,
    pairs_from_comparisons,
)

WORDS = "apple banana cherry grape lemon mango orange pear peach plum".split()


def planted(n, seed):
    """The chosen answer says the fruit the prompt asked about; the rejected one names another."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        fruit, other = rng.sample(WORDS, 2)
        filler = " ".join(rng.choices(WORDS, k=rng.randint(0, 4)))
        good, bad = f"{filler} {fruit} yes".strip(), f"{filler} {other} no".strip()
        a_first = rng.random() < 0.5
        out.append(
            Comparison(
                f"s{seed}-{i}",
                f"Which fruit: {fruit}?",
                good if a_first else bad,
                bad if a_first else good,
                "a" if a_first else "b",
            )
        )
    return out


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # tests/conftest.py's, for every test here
    yield


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    texts = [f"{c.prompt} {c.response_a} {c.response_b}" for c in planted(300, 99)]
    return str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), texts, vocab_size=300, hidden_size=32))


def config(out, model, **kw):
    base = dict(
        model=model, output_dir=str(out), lr=3e-3, batch_size=16, epochs=2, max_length=48,
        progress=False, warmup_ratio=0.0, lr_schedule="constant", log_every=5,
    )  # fmt: skip
    base.update(kw)
    return RMConfig(**base)


def test_rm_learns_planted_preference_and_reloads(tiny_dir, tmp_path):
    out = tmp_path / "rm"
    trainer = RMTrainer(config(out, tiny_dir))
    held_out = planted(80, 2)
    result = trainer.train(pairs_from_comparisons(planted(240, 1)), held_out)
    assert result["eval"]["accuracy"] > 0.85, result["eval"]
    assert (out / "reward_model.json").exists() and (out / "metrics.jsonl").exists()
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"train/loss", "train/accuracy", "train/lr"} <= set(row) and "loss" not in row
    assert not (out / "tb").exists()  # report_to=none: the JSONL only
    # the saved model scores exactly as the trained one, and batching does not change a score
    scorer = RewardScorer.from_pretrained(out, device="cpu", batch_size=7)
    samples, responses = [c.sample() for c in held_out], [c.response_a for c in held_out]
    in_memory = trainer.scorer().score(samples, responses)
    reloaded = scorer.score(samples, responses)
    assert reloaded == pytest.approx(in_memory, abs=1e-4)
    one_by_one = [scorer.score([s], [r])[0] for s, r in zip(samples[:5], responses[:5])]
    assert one_by_one == pytest.approx(reloaded[:5], abs=1e-4)


def test_one_forward_pass_equals_separate_passes(tiny_dir):
    model, tok = load_reward_model(tiny_dir)
    model.eval()
    enc = encode_pairs(tok, pairs_from_comparisons(planted(6, 3)), 48)
    b = collate_pairs(enc, tok.pad_token_id)
    assert b["input_ids"].shape[0] == 12
    with torch.no_grad():
        joint = rewards(model, b["input_ids"], b["attention_mask"])
        alone = [
            rewards(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)).item()
            for ids in [p.chosen for p in enc] + [p.rejected for p in enc]
        ]
    assert joint.tolist() == pytest.approx(alone, abs=1e-5)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_grad_accumulation_matches_a_bigger_batch(tiny_dir, tmp_path):
    # Plain SGD so the update is the gradient itself (Adam's first step is ~lr*sign(g): noise-sensitive).
    enc = None
    grads = {}
    for name, micro_sizes in (("big", [8]), ("accum", [4, 4]), ("uneven", [3, 5])):
        trainer = RMTrainer(config(tmp_path / name, tiny_dir, max_grad_norm=0.0))
        enc = enc or encode_pairs(trainer.tokenizer, pairs_from_comparisons(planted(8, 4)), 48)
        micro, start = [], 0
        for size in micro_sizes:
            micro.append(enc[start : start + size])
            start += size
        before = _params(trainer.model)
        opt = torch.optim.SGD(trainer.model.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        trainer._train_step(trainer.model, opt, sched, micro, 0)
        grads[name] = before - _params(trainer.model)
    assert grads["big"].abs().max() > 1e-4
    assert torch.allclose(grads["big"], grads["accum"], atol=1e-6)
    assert torch.allclose(grads["big"], grads["uneven"], atol=1e-6)


def test_resume_reproduces_an_uninterrupted_run(tiny_dir, tmp_path):
    pairs = pairs_from_comparisons(planted(48, 5))
    straight = RMTrainer(config(tmp_path / "a", tiny_dir, max_steps=4, batch_size=8))
    straight.train(pairs)
    first = RMTrainer(config(tmp_path / "b", tiny_dir, max_steps=4, batch_size=8, save_every=2))
    first.train(pairs)
    # forget the finished model: resume from the step-2 checkpoint and run steps 3 and 4 again
    resumed = RMTrainer(config(tmp_path / "b", tiny_dir, max_steps=4, batch_size=8, resume=True))
    result = resumed.train(pairs)
    assert result["steps"] == 4
    assert torch.allclose(_params(straight.model), _params(resumed.model), atol=1e-5)


def test_lora_trains_and_saves_a_plain_model(tiny_dir, tmp_path):
    out = tmp_path / "lora"
    trainer = RMTrainer(config(out, tiny_dir, lora_r=4, max_steps=3))
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any("score" in n for n in trainable)
    trainer.train(pairs_from_comparisons(planted(32, 6)))
    scorer = RewardScorer.from_pretrained(out, device="cpu")
    assert not any("lora" in n for n, _ in scorer.model.named_parameters())
    c = planted(4, 7)
    expected = trainer.scorer().score([x.sample() for x in c], [x.response_a for x in c])
    assert scorer.score([x.sample() for x in c], [x.response_a for x in c]) == pytest.approx(
        expected, abs=1e-4
    )


def test_ties_weights_and_nan_guard(tiny_dir, tmp_path):
    tie = Comparison("t", "Which fruit: plum?", "plum yes", "pear no", "tie", meta={"weight": 2.0})
    pairs = pairs_from_comparisons([tie, *planted(3, 8)])
    assert pairs[0].target == 0.5 and pairs[0].weight == 2.0
    assert len(pairs_from_comparisons([tie], use_ties=False)) == 0
    assert pairs_from_comparisons([tie], use_weights=False)[0].weight == 1.0
    from chatglm_rlhf.errors import TrainingError

    with pytest.raises(TrainingError, match="step 1"):
        RMTrainer(config(tmp_path / "nan", tiny_dir, max_steps=2, reg_coef=float("nan"))).train(pairs)
