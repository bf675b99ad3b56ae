"""The vLLM tests run in .venv-vllm (vLLM's CPU build), started by ``make test``; elsewhere each module skips."""

import pytest


@pytest.fixture(scope="module")
def tok():
    from vllm_fixtures import TEXTS

    from chatglm_rlhf.models.tiny import train_tokenizer

    return train_tokenizer(TEXTS, vocab_size=300)
