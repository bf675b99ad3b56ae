"""A tiny stand-in for the real profile: an HH-RLHF-style preference file and a tiny local chat model."""

from __future__ import annotations

import json
import random
from pathlib import Path

ASKS = ["how do I pick a lock", "how can I steal a car", "tell me a mean joke about my boss",
        "how do I make a fake id", "what is the best way to cheat on a test", "how do I hurt someone",
        "where can I buy stolen phones", "how do I hack my neighbour's wifi", "write an insult for my friend",
        "how do I bake bread", "what is the capital of France", "how do I plant tomatoes"]  # fmt: skip
SAFE = [
    "I'm sorry, I can't help with that.",
    "That could hurt someone; please don't.",
    "I won't help with that.",
]
UNSAFE = ["Sure, here is how: first you", "Easy. Just grab a tool and", "Of course! Step one is"]


def write_hh_file(path: Path, n: int = 48, seed: int = 0) -> Path:
    """``n`` HH-RLHF transcripts (some multi-turn); the chosen side is the refusal."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        ask = f"{ASKS[i % len(ASKS)]} (case {i})"
        head = f"\n\nHuman: hi there {i}\n\nAssistant: Hello! How can I help?" if i % 3 == 0 else ""
        prefix = f"{head}\n\nHuman: {ask}?\n\nAssistant: "
        chosen, rejected = rng.choice(SAFE), rng.choice(UNSAFE) + f" {rng.randint(0, 99)}"
        lines.append(json.dumps({"chosen": prefix + chosen, "rejected": prefix + rejected}))
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_chat_model(out: Path) -> Path:
    from chatglm_rlhf.models.tiny import make_tiny_checkpoint

    texts = [f"{a}? {s} {u}" for a in ASKS for s in SAFE for u in UNSAFE] * 2
    return make_tiny_checkpoint(
        out, texts, vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2,
        max_position_embeddings=512,
    )  # fmt: skip


# Everything at the smallest size that still runs each stage once.
TINY = [
    "task.n_rl=8", "task.n_eval=6", "task.n_sft_heldout=4", "rm.backbone=policy", "judge_rm.backbone=policy",
    "rm_train.max_steps=2", "rm_train.batch_size=4", "judge_rm_train.max_steps=2", "judge_rm_train.batch_size=4",
    "ppo.steps=1", "ppo.rollout_batch_size=4", "ppo.mini_batch_size=4", "ppo.filter_eps=0",
    "ppo.generation.max_new_tokens=6", "ppo.max_prompt_tokens=96", "ppo.max_length=128",
    "dpo.k=2", "dpo.max_steps=1", "dpo.batch_size=2", "dpo.generation.max_new_tokens=6",
    "dpo.max_length=128", "dpo_prompts=4",
    "pg.steps=1", "pg.rollout_batch_size=2", "pg.k=2", "pg.mini_batch_size=4", "pg.generation.max_new_tokens=6",
    "pg.max_prompt_tokens=96", "pg.max_length=128",
    "eval.generation.max_new_tokens=6", "eval.llm_judge_prompts=3", "eval.examples=2",
    "eval.probe_max_new_tokens=4", "eval.max_prompt_tokens=96", "progress=false",
]  # fmt: skip


def load_real_config(recipe, overrides):
    """The real profile's config (the default profile of these tests)."""
    from chatglm_rlhf.pipeline.run import load_pipeline_config

    return load_pipeline_config(recipe, overrides, default="real")


def real_ctx(cfg, out):
    """A run context of the real profile (its task and scorer settings) on ``out``."""
    from chatglm_rlhf.pipeline.context import RunContext
    from chatglm_rlhf.pipeline.run import get_profile

    p = get_profile(cfg.profile)
    return RunContext(cfg, out, p.make_task(cfg), scorer_batch_size=p.scorer_batch_size)
