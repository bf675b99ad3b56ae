import json

import pytest
import torch
from dpo_fixtures import SUMS, _cfg, _model, _pairs, make_tokenizer

from chatglm_rlhf.policy.dpo.losses import masked_sequence_logps
from chatglm_rlhf.policy.dpo.trainer import (
    DPOTrainer,
    collate_pairs,
    concatenated_logps,
    encode_pairs,
)
from chatglm_rlhf.policy.losses import token_logprobs


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def test_encode_pairs_uses_the_label(tok):
    ex = encode_pairs(tok, _pairs(), max_length=64)
    assert len(ex) == len(SUMS)
    for e in ex:
        chosen = tok.decode(e.chosen.input_ids[e.chosen.prompt_len :], skip_special_tokens=True)
        assert chosen.startswith("The answer is")
        assert e.chosen.input_ids[: e.chosen.prompt_len] == e.rejected.input_ids[: e.rejected.prompt_len]


def test_one_forward_for_both_equals_separate_unpadded_forwards(tok):
    model = _model(tok).eval()
    ex = encode_pairs(tok, _pairs()[:4], max_length=64)
    with torch.no_grad():
        pc, pr, lc, lr = concatenated_logps(model, collate_pairs(ex, tok.pad_token_id), "cpu")
        for j, e in enumerate(ex):
            for enc, got, n in ((e.chosen, pc[j], lc[j]), (e.rejected, pr[j], lr[j])):
                ids = torch.tensor([enc.input_ids])
                lp = token_logprobs(model(input_ids=ids).logits, ids)
                want, count = masked_sequence_logps(lp, torch.tensor([enc.labels]))
                assert got.item() == pytest.approx(want.item(), abs=1e-4)
                assert n.item() == count.item() == len(enc.input_ids) - enc.prompt_len


def test_dpo_raises_implicit_reward_accuracy(tok, tmp_path):
    trainer = DPOTrainer(_cfg(tmp_path, max_steps=25), _model(tok), tok)
    ex = encode_pairs(tok, _pairs(), 64)
    trainer.cache_reference(ex)
    before = trainer.evaluate(ex)
    assert before["rewards/accuracy"] == 0.0  # policy == reference: every margin is exactly 0
    assert before["loss"] == pytest.approx(0.6931, abs=1e-3)
    result = trainer.train(_pairs())
    after = trainer.evaluate(ex)
    assert after["rewards/accuracy"] >= 0.9
    assert after["rewards/margin"] > 0.5
    assert after["loss"] < before["loss"] - 0.2
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == result["steps"] == 25
    for key in ("loss", "rewards/accuracy", "rewards/margin", "logps/chosen", "length/rejected", "lr"):
        assert f"train/{key}" in rows[-1]
    assert (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize(
    "kw", [{"loss_type": "ipo", "beta": 0.5}, {"label_smoothing": 0.2}, {"nll_weight": 1.0}]
)
def test_variants_train(tok, tmp_path, kw):
    trainer = DPOTrainer(_cfg(tmp_path, max_steps=8, **kw), _model(tok), tok)
    ex = encode_pairs(tok, _pairs(), 64)
    trainer.cache_reference(ex)
    result = trainer.train(_pairs())
    assert trainer.evaluate(ex)["rewards/margin"] > 0
    assert ("train/nll" in result) == bool(kw.get("nll_weight"))


def test_resume_reproduces_an_uninterrupted_run(tok, tmp_path):
    full = DPOTrainer(_cfg(tmp_path / "full", max_steps=4), _model(tok), tok)
    full.train(_pairs())
    part = DPOTrainer(_cfg(tmp_path / "part", max_steps=4, save_every=2), _model(tok), tok)
    part.train(_pairs())  # leaves a checkpoint at step 2
    resumed = DPOTrainer(_cfg(tmp_path / "part", max_steps=4, resume=True), _model(tok), tok)
    result = resumed.train(_pairs())
    assert result["steps"] == 4
    for pa, pb in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)
