"""Shared builders for the vLLM tests: a tiny Llama fitted a little, its prompts, greedy answers."""

import torch

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.data.templates import prompt_ids
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.models.tiny import build_tiny_model

TEXTS = ["What is 2 plus 3?", "The answer is 5.", "List two fruits.", "Apple, pear.", "Sorry, I can't."] * 10
QUESTIONS = [f"What is {i} plus {i + 1}?" for i in range(6)] + ["List two fruits.", "Name a colour."]


def tiny_llama(tok, steps: int = 40, seed: int = 0):
    """A 2-layer Llama (head_dim 32: vLLM's CPU attention needs >= 32) fitted a little to TEXTS, so greedy
    answers are peaked enough that fp32 rounding does not flip an argmax."""
    model = build_tiny_model(
        tok, hidden_size=64, num_heads=2, num_kv_heads=1, seed=seed, architecture="llama"
    )
    batch = tok([t + tok.eos_token for t in TEXTS[:5]], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


def prompts(tok):
    return [prompt_ids(tok, DialogueSample(id=f"q{i}", prompt=q), 64)[0] for i, q in enumerate(QUESTIONS)]


def greedy(gen, ps, n=12):
    s = GenerationSettings(max_new_tokens=n, greedy=True, batch_size=8, backend="vllm")
    return [g[0].response_ids for g in gen.generate(ps, 1, s)]
