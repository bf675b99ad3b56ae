"""Without vLLM installed, backend=vllm is a one-line error that says how to install it."""

import sys

import pytest

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.models.generation import GenerationSettings, make_generator
from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer


def test_backend_vllm_without_vllm_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm now raises ImportError
    tok = train_tokenizer(["hello there"] * 4, vocab_size=270)
    model = build_tiny_model(tok, hidden_size=32, num_heads=4, num_kv_heads=2)
    with pytest.raises(UserError) as e:
        make_generator(model, tok, GenerationSettings(backend="vllm"))
    msg = str(e.value)
    assert "\n" not in msg and "setup_vllm_env.sh" in msg and "[vllm]" in msg


def test_tiny_llama_builds_for_the_vllm_tests():
    tok = train_tokenizer(["hello there"] * 4, vocab_size=270)
    model = build_tiny_model(tok, hidden_size=64, num_heads=2, num_kv_heads=1, architecture="llama")
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.head_dim == 32
    with pytest.raises(ValueError, match="glm or llama"):
        build_tiny_model(tok, architecture="gpt2")
