"""Fixtures of the multi-process CPU tests: a tiny world on disk (policy, reward model, data files).

The launcher and the result readers live in ``dist_helpers.py`` (a uniquely named module: several test
folders have a conftest.py, so importing from "conftest" would be ambiguous).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from dist_helpers import write_jsonl

FRUITS = "apple banana cherry grape lemon mango orange pear peach plum".split()


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # tests/conftest.py's, for every test here
    yield


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict[str, Path]:
    """A tiny GLM policy, a reward model made from it, SFT data, preference pairs and RL prompts."""
    from chatglm_rlhf.models.tiny import make_tiny_checkpoint
    from chatglm_rlhf.reward.model import reward_model_from_causal, save_reward_model

    root = tmp_path_factory.mktemp("dist_world")
    rng = random.Random(7)
    sft, pairs, prompts = [], [], []
    for i in range(32):
        fruit, other = rng.sample(FRUITS, 2)
        filler = " ".join(rng.choices(FRUITS, k=rng.randint(0, 3)))
        good, bad = f"{filler} {fruit} yes".strip(), f"{filler} {other} no".strip()
        prompt = f"Which fruit: {fruit}?"
        sft.append({"id": f"s{i}", "prompt": prompt, "responses": [good]})
        a_first = rng.random() < 0.5
        pairs.append(
            {
                "sample_id": f"s{i}",
                "prompt": prompt,
                "response_a": good if a_first else bad,
                "response_b": bad if a_first else good,
                "label": "a" if a_first else "b",
                # length-balancing weights as the filter writes them: the RM's normalisation must be global
                "meta": {"weight": [0.5, 1.0, 2.0][i % 3]},
            }
        )
        prompts.append({"id": f"p{i}", "prompt": prompt})
    texts = [f"{p['prompt']} {p['response_a']} {p['response_b']}" for p in pairs] * 4
    policy = make_tiny_checkpoint(root / "policy", texts, vocab_size=300, hidden_size=32, num_layers=2)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(policy)
    rm = reward_model_from_causal(AutoModelForCausalLM.from_pretrained(policy), tok)
    save_reward_model(rm, tok, root / "rm", {"max_length": 64})
    return {
        "root": root,
        "policy": policy,
        "rm": root / "rm",
        "sft": write_jsonl(root / "sft.jsonl", sft),
        "pairs": write_jsonl(root / "pairs.jsonl", pairs),
        "prompts": write_jsonl(root / "prompts.jsonl", prompts),
    }
