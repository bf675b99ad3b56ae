"""Supervised fine-tuning: next-token loss on the response tokens only (history and prompt masked).

The same loop runs on CPU, one GPU or many through accelerate. Gradient accumulation divides by the
number of response tokens of the whole optimizer step, so accumulating k micro-batches gives the same
update as one k-times-larger batch.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from chatglm_rlhf.config import default_, field_
from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.policy.losses import sft_loss
from chatglm_rlhf.utils.distributed import Ranks
from chatglm_rlhf.utils.files import atomic_save
from chatglm_rlhf.utils.train_config import EpochTrainerConfig
from chatglm_rlhf.utils.training import (
    check_finite,
    epoch_order,
    make_accelerator,
    open_run,
    save_json,
    set_seed,
    train_metrics,
    warmup_schedule,
)


@dataclass
class SFTConfig(EpochTrainerConfig):
    output_dir: str = default_("out/sft")
    lr: float = default_(5e-5)
    data: str = field_(
        "",
        help="SFT data: our samples (each response a target), TRL messages or prompt/completion, or a "
        "preference file (chosen); JSONL, .json, Parquet or a datasets folder",
    )
    eval_data: str | None = field_(None, help="optional held-out SFT data for the eval loss")
    max_length: int = field_(
        512, help="max tokens of history + prompt + response (oldest history dropped first)"
    )
    truncate_response: bool = field_(False, help="cut over-long responses instead of raising an error")
    batch_size: int = field_(8, help="sequences per micro-batch per device")


def load_sft_examples(path: str, strict: bool = False) -> list[tuple[DialogueSample, str]]:
    """(sample, target response) pairs: our samples, TRL messages / prompt-completion, or preferences.

    See :func:`chatglm_rlhf.data.formats.load_sft_examples` for the formats (JSONL, JSON, Parquet or a
    datasets folder); the read report and what gave no target are printed.
    """
    from chatglm_rlhf.data.formats import load_sft_examples as load

    examples, report, notes = load(path, strict=strict)
    report.print()
    for note in notes:
        print(note)
    return examples


def encode_examples(tokenizer, examples, max_length: int, truncate_response: bool) -> list:
    from chatglm_rlhf.data.templates import encode_sft

    encoded = [encode_sft(tokenizer, s, r, max_length, truncate_response) for s, r in examples]
    dropped = sum(e.history_dropped for e in encoded)
    if dropped:
        print(f"truncation: dropped {dropped} oldest history turns to fit max_length={max_length}")
    return encoded


def evaluate_loss(model, batches, device) -> float:
    """Mean per-token SFT loss over ``batches`` (dicts from ``collate_encoded``)."""
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for b in batches:
            logits = model(
                input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device)
            ).logits
            loss, n = sft_loss(logits, b["labels"].to(device), reduction="sum")
            total += float(loss)
            tokens += int(n)
    return total / max(tokens, 1)


def make_batches(encoded, batch_size: int, pad_id: int, seed: int = 0, shuffle: bool = False) -> list[dict]:
    from chatglm_rlhf.data.collate import collate_encoded, length_grouped_batches

    groups = length_grouped_batches(
        [len(e.input_ids) for e in encoded], batch_size, seed=seed, shuffle=shuffle
    )
    return [collate_encoded([encoded[i] for i in g], pad_id) for g in groups]


class SFTTrainer:
    def __init__(self, cfg: SFTConfig, model=None, tokenizer=None):
        self.cfg = cfg
        set_seed(cfg.seed)
        # Accumulation is done by hand (the loss is divided by the whole step's token count), so the
        # accelerator must not divide by grad_accum a second time.
        self.acc = make_accelerator(cfg.mixed_precision, 1, cpu=cfg.cpu)
        if model is None or tokenizer is None:
            model, tokenizer = self._load(cfg)
        self.model, self.tokenizer = model, tokenizer
        self.pad_id = tokenizer.pad_token_id

    @staticmethod
    def _load(cfg: SFTConfig):
        from chatglm_rlhf.models.loading import load_for_training

        return load_for_training(
            cfg.model, "sft", cfg.trust_remote_code, cfg.lora_r, cfg.lora_alpha, cfg.gradient_checkpointing
        )

    def train(self, examples: list[tuple[DialogueSample, str]], eval_examples=None) -> dict:
        cfg, acc = self.cfg, self.acc
        enc = encode_examples(self.tokenizer, examples, cfg.max_length, cfg.truncate_response)
        if not enc:
            raise UserError("sft: no training examples")
        per_step = cfg.batch_size * cfg.grad_accum * acc.num_processes
        steps_per_epoch = max(1, len(enc) // per_step)
        total = cfg.max_steps if cfg.max_steps > 0 else max(1, int(cfg.epochs * steps_per_epoch))
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = warmup_schedule(opt, cfg.lr_schedule, cfg.warmup_ratio, total)
        model, opt, sched = acc.prepare(self.model, opt, sched)
        self.prepared = model
        ckpt, log, state = open_run(cfg.output_dir, acc, cfg.resume, report_to=cfg.report_to, config=cfg)
        step = state["step"]
        bar = tqdm(total=total, initial=step, desc="sft", disable=not (cfg.progress and acc.is_main_process))
        t0, last_loss = time.time(), float("nan")
        while step < total:
            batch_idx = self._step_indices(len(enc), step, per_step)
            last_loss = self._train_step(model, opt, sched, [enc[i] for i in batch_idx], step)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.3f}")
            if step % cfg.log_every == 0 or step == total:
                log.log(step, train_metrics({"loss": last_loss}, sched.get_last_lr()[0]))
            if cfg.save_every and step % cfg.save_every == 0 and step < total:
                ckpt.save(step)
        bar.close()
        log.close()
        result = {"steps": step, "train_loss": last_loss, "seconds": time.time() - t0}
        if eval_examples:
            ev = encode_examples(self.tokenizer, eval_examples, cfg.max_length, cfg.truncate_response)
            result["eval_loss"] = evaluate_loss(
                model, make_batches(ev, cfg.batch_size, self.pad_id), acc.device
            )
        self.save(result)
        return result

    def _step_indices(self, n: int, step: int, per_step: int) -> list[int]:
        """This rank's examples for optimizer step ``step``; the order is a function of (seed, epoch)."""
        steps_per_epoch = max(1, n // per_step)
        epoch, k = divmod(step, steps_per_epoch)
        order = epoch_order(n, self.cfg.seed, epoch)
        global_idx = [order[(k * per_step + j) % n] for j in range(per_step)]
        return Ranks.of(self.acc).share(global_idx)

    def _train_step(self, model, opt, sched, batch: list, step: int) -> float:
        from chatglm_rlhf.data.collate import collate_encoded

        cfg, acc = self.cfg, self.acc
        model.train()
        local_tokens = sum(sum(1 for x in e.labels[1:] if x != -100) for e in batch)
        # Every rank divides by the token count of the whole global step; DDP then averages gradients
        # over ranks, hence the factor num_processes: the update equals one big single-process batch.
        n_tokens = int(acc.reduce(torch.tensor(local_tokens, device=acc.device), "sum"))
        scale = acc.num_processes / max(n_tokens, 1)
        micro = [batch[i : i + cfg.batch_size] for i in range(0, len(batch), cfg.batch_size)]
        total = 0.0
        for i, mb in enumerate(micro):
            b = collate_encoded(mb, self.pad_id)
            ctx = acc.no_sync(model) if i < len(micro) - 1 else nullcontext()
            with ctx, acc.autocast():
                logits = model(
                    input_ids=b["input_ids"].to(acc.device), attention_mask=b["attention_mask"].to(acc.device)
                ).logits
                loss_sum, _ = sft_loss(logits, b["labels"].to(acc.device), reduction="sum")
                loss = loss_sum * scale
            check_finite(loss, step + 1)
            acc.backward(loss)
            total += float(loss_sum.detach()) / max(n_tokens, 1)
        if cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return float(acc.reduce(torch.tensor(total, device=acc.device), "sum"))

    def save(self, result: dict) -> None:
        acc, out = self.acc, Path(self.cfg.output_dir)
        acc.wait_for_everyone()
        # Gathered on every rank: under FSDP / ZeRO-3 each rank holds only a shard of the weights.
        state = acc.get_state_dict(getattr(self, "prepared", self.model))
        if acc.is_main_process:
            unwrapped = acc.unwrap_model(self.model)
            if hasattr(unwrapped, "merge_and_unload"):  # LoRA: save a plain model that from_pretrained loads
                unwrapped, state = unwrapped.merge_and_unload(), None
            with atomic_save(out) as tmp:  # a kill or a full disk never leaves half a model in out
                unwrapped.save_pretrained(tmp, state_dict=state, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp)
            save_json(out / "sft_result.json", result)
            save_json(out / "sft_config.json", self.cfg.__dict__)


def run_sft(cfg: SFTConfig) -> dict:
    if not cfg.model or not cfg.data:
        raise UserError("sft: model=... is required (a local path or hub id) and data=... (an SFT file)")
    examples = load_sft_examples(cfg.data, cfg.strict)
    eval_examples = load_sft_examples(cfg.eval_data, cfg.strict) if cfg.eval_data else None
    return SFTTrainer(cfg).train(examples, eval_examples)
