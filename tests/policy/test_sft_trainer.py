"""SFT on a tiny model: masking, loss going down, grad accumulation, NaN guard, resume, save/load."""

import json
import math

import pytest
import torch

from chatglm_rlhf.data.schema import DialogueSample, Turn
from chatglm_rlhf.data.templates import encode_sft
from chatglm_rlhf.errors import TrainingError
from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer
from chatglm_rlhf.policy.losses import sft_loss
from chatglm_rlhf.policy.sft import SFTConfig, SFTTrainer, encode_examples, evaluate_loss, make_batches

WORDS = "red green blue cat dog sun moon one two three yes no hello world what is the answer".split()


@pytest.fixture(scope="module")
def tok():
    texts = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 5
    return train_tokenizer(texts, vocab_size=300)


def examples(n=24):
    out = []
    for i in range(n):
        hist = [Turn("user", "hello"), Turn("assistant", "hello world")] if i % 3 == 0 else []
        s = DialogueSample(id=f"s{i}", prompt=f"what is {WORDS[i % 6]}", history=hist)
        out.append((s, f"the answer is {WORDS[(i + 1) % 6]}"))
    return out


def trainer(tok, tmp_path, **kw):
    cfg = SFTConfig(
        model="tiny",
        output_dir=str(tmp_path),
        batch_size=4,
        lr=3e-3,
        max_length=64,
        cpu=True,
        progress=False,
        **kw,
    )
    return SFTTrainer(cfg, model=build_tiny_model(tok, hidden_size=32, num_layers=2, seed=0), tokenizer=tok)


def test_loss_masks_history_and_prompt_on_a_tiny_model(tok):
    model = build_tiny_model(tok, hidden_size=32, num_layers=2, seed=0)
    sample, response = examples()[0]
    enc = encode_sft(tok, sample, response, max_length=64)
    ids = torch.tensor([enc.input_ids])
    logits = model(input_ids=ids).logits
    loss, n = sft_loss(logits, torch.tensor([enc.labels]))
    # By hand: mean cross-entropy of predicting exactly the response tokens (incl. eos) from their prefixes.
    logp = torch.log_softmax(logits[0].float(), -1)
    start = enc.prompt_len
    manual = -torch.stack([logp[t - 1, ids[0, t]] for t in range(start, len(enc.input_ids))]).mean()
    assert int(n) == len(enc.input_ids) - enc.prompt_len
    assert torch.allclose(loss, manual, atol=1e-5)
    assert sample.history and enc.prompt_len > len(tok(sample.prompt)["input_ids"])  # history is in the input


def test_training_lowers_loss_and_saves_a_loadable_model(tok, tmp_path):
    from transformers import AutoModelForCausalLM

    data = examples()
    t2 = trainer(tok, tmp_path / "b", max_steps=40, log_every=10)
    enc = encode_examples(tok, data, 64, False)
    initial = evaluate_loss(t2.model, make_batches(enc, 8, tok.pad_token_id), "cpu")
    result = t2.train(data, data)
    rows = [json.loads(r) for r in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert initial > 4.0  # an untrained model: about log(vocab)
    assert result["eval_loss"] < 0.6 * initial
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "b")
    ids = torch.tensor([[5, 6, 7]])
    assert torch.allclose(reloaded(input_ids=ids).logits, t2.model(input_ids=ids).logits, atol=1e-5)


def test_grad_accumulation_equals_one_big_batch(tok, tmp_path):
    data = examples(8)
    a = trainer(tok, tmp_path / "a", max_steps=1, grad_accum=2, warmup_ratio=0.0)
    a.cfg.batch_size = 4
    b = trainer(tok, tmp_path / "b", max_steps=1, warmup_ratio=0.0)
    b.cfg.batch_size = 8
    a.train(data)
    b.train(data)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)


def test_nan_loss_stops_with_the_step(tok, tmp_path):
    t = trainer(tok, tmp_path, max_steps=3)
    with torch.no_grad():
        next(t.model.parameters()).fill_(math.nan)
    with pytest.raises(TrainingError, match="at step 1"):
        t.train(examples(8))


def test_resume_continues_exactly(tok, tmp_path):
    data = examples()
    full = trainer(tok, tmp_path / "full", max_steps=6, save_every=3)
    full.train(data)
    # Simulate a kill after step 3: train a 6-step run but stop it by raising after the checkpoint.
    part = trainer(tok, tmp_path / "part", max_steps=6, save_every=3)
    original = part._train_step
    calls = {"n": 0}

    def dying(*a, **k):
        if calls["n"] == 4:
            raise KeyboardInterrupt
        calls["n"] += 1
        return original(*a, **k)

    part._train_step = dying
    with pytest.raises(KeyboardInterrupt):
        part.train(data)
    resumed = trainer(tok, tmp_path / "part", max_steps=6, save_every=3, resume=True)
    resumed.train(data)
    for pa, pb in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)
