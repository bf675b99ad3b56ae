"""The tiny local tokenizer/model factory: specials, round trips, size, determinism, save/load."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GlmForCausalLM

from chatglm_rlhf.models.tiny import (
    ROLE_TOKENS,
    SPECIAL_TOKENS,
    build_tiny_model,
    make_tiny_checkpoint,
    train_tokenizer,
)

WORDS = ["the", "model", "answers", "a", "question", "about", "rain", "tea", "why", "is", "sky", "blue"]
TEXTS = [
    f"{a} {b} {c}? {n}. 你好,{b}!"
    for n, (a, b, c) in enumerate(itertools.islice(itertools.product(WORDS, repeat=3), 300))
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=400)


def test_specials_are_single_tokens(tok):
    for s in SPECIAL_TOKENS:
        ids = tok.encode(s, add_special_tokens=False)
        assert len(ids) == 1, s
        assert tok.convert_ids_to_tokens(ids[0]) == s
    assert tok.pad_token == "<|pad|>" and tok.eos_token == "<|endoftext|>"
    assert tok.pad_token_id != tok.eos_token_id
    assert set(ROLE_TOKENS) <= set(tok.all_special_tokens)


def test_vocab_size_and_bpe_merges(tok):
    assert len(tok) == 400
    # trained merges: a frequent word is one token, not one per byte
    assert len(tok.encode("question", add_special_tokens=False)) == 1


@pytest.mark.parametrize("text", ["Hello, world!", "  two  spaces\nand a newline\t", "中文 emoji 🙂 é", ""])
def test_decode_round_trips_unseen_text(tok, text):
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_chat_template_generation_prompt_and_eos(tok):
    msgs = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "why?"},
    ]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert (
        text
        == "<|system|>\nBe kind.<|user|>\nhi<|assistant|>\nhello<|endoftext|><|user|>\nwhy?<|assistant|>\n"
    )
    ids = tok.encode(text, add_special_tokens=False)
    assert ids[-2:] == [
        tok.convert_tokens_to_ids("<|assistant|>"),
        tok.encode("\n", add_special_tokens=False)[0],
    ]
    assert ids.count(tok.eos_token_id) == 1


def test_model_is_small_glm_with_tokenizer_ids(tok):
    model = build_tiny_model(tok)
    assert isinstance(model, GlmForCausalLM)
    assert model.config.hidden_size <= 128
    assert model.config.vocab_size == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id and model.config.eos_token_id == tok.eos_token_id
    n_params = sum(p.numel() for p in model.parameters())
    assert 50_000 < n_params < 500_000
    out = model(torch.tensor([tok.encode("why is the sky blue?")]))
    assert out.logits.shape[-1] == len(tok)


def test_model_is_deterministic_and_leaves_global_rng_alone(tok):
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = build_tiny_model(tok, seed=0), build_tiny_model(tok, seed=0), build_tiny_model(tok, seed=1)
    assert torch.equal(torch.rand(1), expected)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.embed_tokens.weight"], sc["model.embed_tokens.weight"])


def test_model_size_knobs(tok):
    model = build_tiny_model(
        tok, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=48
    )
    assert model.config.num_hidden_layers == 1 and model.config.intermediate_size == 48
    assert model.config.head_dim == 16
    with pytest.raises(ValueError):
        build_tiny_model(tok, hidden_size=30, num_heads=4)


def test_checkpoint_round_trip(tmp_path):
    path = make_tiny_checkpoint(
        tmp_path / "ckpt", TEXTS, vocab_size=300, hidden_size=32, num_heads=2, num_kv_heads=1
    )
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    fresh_tok = train_tokenizer(TEXTS, vocab_size=300)
    fresh = build_tiny_model(fresh_tok, hidden_size=32, num_heads=2, num_kv_heads=1)
    text = "<|user|>\nwhy is tea blue?<|assistant|>\n"
    assert tok.encode(text) == fresh_tok.encode(text)
    assert tok.chat_template == fresh_tok.chat_template and tok.pad_token == "<|pad|>"
    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, fresh(ids).logits)
    # a greedy continuation runs end to end on the loaded pair
    out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > ids.shape[1]
