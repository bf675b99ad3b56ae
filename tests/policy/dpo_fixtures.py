"""Shared data and builders for the DPO tests: tiny arithmetic preference pairs and a tiny model."""

from chatglm_rlhf.data.schema import Comparison
from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer
from chatglm_rlhf.policy.dpo.config import DPOConfig

SUMS = [(a, b) for a in range(1, 5) for b in range(1, 3)]


def _pairs() -> list[Comparison]:
    out = []
    for i, (a, b) in enumerate(SUMS):
        out.append(
            Comparison(
                sample_id=f"s{i}",
                prompt=f"What is {a} + {b}?",
                response_a=f"The answer is {a + b}.",
                response_b=f"I think it is {a + b + 3}, maybe {a + b + 3}.",
                label="a" if i % 2 == 0 else "b",
            )
        )
        if i % 2:  # alternate which side is chosen so the label is read, not position
            c = out[-1]
            c.response_a, c.response_b = c.response_b, c.response_a
    return out


def make_tokenizer():
    texts = [f"What is {a} + {b}? The answer is {a + b}. I think it is, maybe" for a, b in SUMS] * 4
    return train_tokenizer(texts, vocab_size=300)


def _model(tok, seed=0):
    return build_tiny_model(tok, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, seed=seed)


def _cfg(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "out"),
        max_length=64,
        batch_size=4,
        lr=1e-3,
        beta=0.1,
        warmup_ratio=0.0,
        lr_schedule="constant",
        progress=False,
        log_every=1,
        cpu=True,
    )
    base.update(kw)
    return DPOConfig(**base)
