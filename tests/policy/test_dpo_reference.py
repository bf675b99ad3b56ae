import copy
import dataclasses
import json

import pytest
import torch
from dpo_fixtures import SUMS, _cfg, _model, _pairs, make_tokenizer

from chatglm_rlhf.policy.dpo import trainer as dpo_mod
from chatglm_rlhf.policy.dpo.trainer import (
    DPOTrainer,
    collate_pairs,
    concatenated_logps,
    encode_pairs,
    reference_logps,
)


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def test_cached_reference_equals_on_the_fly(tok, tmp_path):
    model = _model(tok)
    cached = DPOTrainer(_cfg(tmp_path / "a", max_steps=2), copy.deepcopy(model), tok)
    fly = DPOTrainer(_cfg(tmp_path / "b", max_steps=2, reference="on_the_fly"), copy.deepcopy(model), tok)
    ex = encode_pairs(tok, _pairs(), max_length=64)
    cached.cache_reference(ex)
    for e in ex:  # the same numbers computed on the fly, one pair at a time (other padding)
        c, r = fly._ref_for_batch(
            fly.model, collate_pairs([dataclasses.replace(e, ref_chosen=None)], tok.pad_token_id)
        )
        assert (c.item(), r.item()) == pytest.approx((e.ref_chosen, e.ref_rejected), abs=1e-4)
    ra, rb = cached.train(_pairs()), fly.train(_pairs())
    for key in ("train/loss", "train/rewards/margin", "train/logps/chosen"):
        assert ra[key] == pytest.approx(rb[key], abs=1e-4)
    for pa, pb in zip(cached.model.parameters(), fly.model.parameters()):
        assert torch.allclose(pa, pb, atol=1e-4)
    stored = json.loads((tmp_path / "a" / "out" / "ref_logps_train.json").read_text())
    assert len(stored["values"]) == len(SUMS)


def test_reference_cache_is_reused_when_it_matches(tok, tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    DPOTrainer(cfg, _model(tok), tok).cache_reference(encode_pairs(tok, _pairs(), 64))
    monkeypatch.setattr(dpo_mod, "reference_logps", lambda *a, **k: pytest.fail("recomputed"))
    ex = encode_pairs(tok, _pairs(), 64)
    DPOTrainer(cfg, _model(tok), tok).cache_reference(ex)
    assert all(e.ref_chosen is not None for e in ex)
    changed = encode_pairs(tok, _pairs()[:3], 64)  # other data: the stored values do not apply
    with pytest.raises(pytest.fail.Exception):
        DPOTrainer(cfg, _model(tok), tok).cache_reference(changed)


def test_lora_reference_is_the_adapter_free_base(tok, tmp_path):
    from peft import get_peft_model

    from chatglm_rlhf.models.loading import LoraSettings

    base = _model(tok)
    untouched = copy.deepcopy(base).eval()
    policy = get_peft_model(base, LoraSettings(r=4, alpha=8).to_peft())
    trainer = DPOTrainer(_cfg(tmp_path, max_steps=4, lr=1e-2), policy, tok)
    trainer.train(_pairs())
    ex = encode_pairs(tok, _pairs(), 64)
    ref = reference_logps(policy, ex, 4, tok.pad_token_id, "cpu")
    want = reference_logps(untouched, ex, 4, tok.pad_token_id, "cpu")
    assert [x for p in ref for x in p] == pytest.approx([x for p in want for x in p], abs=1e-4)
    with torch.no_grad():
        pc, _, _, _ = concatenated_logps(policy.eval(), collate_pairs(ex, tok.pad_token_id), "cpu")
    assert not torch.allclose(pc, torch.tensor([c for c, _ in ref]), atol=1e-3)  # the adapter learned


def test_cached_mode_refuses_a_trained_policy_as_reference(tok, tmp_path):
    trainer = DPOTrainer(_cfg(tmp_path, max_steps=1), _model(tok), tok)
    trainer.train(_pairs())
    with pytest.raises(Exception, match="no longer is the reference"):
        trainer.cache_reference(encode_pairs(tok, _pairs(), 64), "other")


def test_explicit_ref_model_is_used_then_freed(tok, tmp_path):
    ref = _model(tok, seed=1).eval()
    trainer = DPOTrainer(_cfg(tmp_path, max_steps=1), _model(tok, seed=0), tok, ref_model=ref)
    ex = encode_pairs(tok, _pairs(), 64)
    want = reference_logps(ref, ex, 4, tok.pad_token_id, "cpu")
    trainer.train(_pairs())
    assert trainer.ref_model is None  # not kept in memory while training
    cached = json.loads((tmp_path / "out" / "ref_logps_train.json").read_text())["values"]
    assert [x for p in cached for x in p] == pytest.approx([x for p in want for x in p], abs=1e-4)
