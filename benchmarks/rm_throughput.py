"""Reward-model training throughput: our RMTrainer vs a raw PyTorch loop vs TRL's RewardTrainer.

All runs train the same model (a fresh copy of the same weights) on the same token ids, with the same
batch size, fp32, no gradient checkpointing, AdamW and the same learning rate, for the same number of
optimizer steps, dropout as the model config has it. Throughput is pairs per second of the training
loop (model loading and tokenisation are not timed); each run is repeated in rotating order and its
best round is reported (the machine's load varies). Runs:

* ``ours``            :class:`RMTrainer` (length-grouped micro-batches, chosen+rejected in one forward)
* ``raw_same``        a bare PyTorch loop over exactly the batches ours used: our trainer's overhead
* ``raw_random``      the same bare loop over randomly formed batches: what length grouping saves
* ``trl``             TRL's ``RewardTrainer`` (default random sampler), when TRL is installed
* ``trl_grouped``     TRL with ``train_sampling_strategy="group_by_length"``, when supported

Usage::

    python benchmarks/rm_throughput.py [--model DIR] [--pairs 512] [--steps 40] [--batch-size 8]

Without ``--model`` a tiny GLM (the demo's default size) and its tokenizer are built locally. Prints a
table and the ratios, and writes ``benchmarks/results/rm_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
WORDS = (
    "the a cat dog ran sat on mat apple river blue green fast slow happy sad house tree light dark "
    "because when then after before very really quite small large answer question please thank you"
).split()


def synthetic_comparisons(n: int, seed: int):
    """Pairs with widely varying lengths (5-150 words), as real preference data has."""
    from chatglm_rlhf.data.schema import Comparison

    rng = random.Random(seed)

    def text(lo, hi):
        return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi))) + "."

    return [Comparison(f"s{i}", text(3, 30), text(5, 150), text(5, 150), "a") for i in range(n)]


def build_model_dir(tmp: Path, comparisons) -> str:
    from chatglm_rlhf.models.tiny import make_tiny_checkpoint

    texts = [f"{c.prompt} {c.response_a} {c.response_b}" for c in comparisons[:300]]
    d = make_tiny_checkpoint(
        tmp / "tiny", texts, vocab_size=1024, hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=4
    )
    return str(d)


def run_ours(model_dir: str, comparisons, args, out: Path) -> tuple[dict, list[list[int]], list]:
    from chatglm_rlhf.reward.trainer import (
        RMConfig,
        RMTrainer,
        encode_pairs,
        micro_batches,
        pairs_from_comparisons,
    )

    cfg = RMConfig(
        model=model_dir, output_dir=str(out / "ours"), max_length=args.max_length, batch_size=args.batch_size,
        max_steps=args.steps, lr=1e-5, warmup_ratio=0.0, lr_schedule="constant", seed=0, progress=False,
        cpu=True, mixed_precision="no", log_every=10_000,
    )  # fmt: skip
    trainer = RMTrainer(cfg)
    pairs = pairs_from_comparisons(comparisons)
    enc = encode_pairs(trainer.tokenizer, pairs, args.max_length)
    result = trainer.train(pairs)
    # The micro-batches of epoch 0, as the trainer formed them (a function of the seed alone).
    batches = micro_batches(enc, args.batch_size, cfg.seed * 1000, True)
    return {"pairs_per_second": result["pairs_per_second"], "seconds": result["seconds"]}, batches, enc


def run_raw(model_dir: str, enc, batches: list[list[int]], args, pad_id: int) -> dict:
    """The bare minimum loop: collate, one forward over chosen+rejected, BT loss, backward, step."""
    import torch.nn.functional as F
    from transformers import AutoModelForSequenceClassification

    from chatglm_rlhf.data.collate import pad_sequences

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = pad_id
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    n_pairs = 0
    t0 = time.perf_counter()
    for step in range(args.steps):
        batch = [enc[i] for i in batches[step % len(batches)]]
        seqs = [p.chosen for p in batch] + [p.rejected for p in batch]
        ids = pad_sequences(seqs, pad_id)
        mask = pad_sequences([[1] * len(s) for s in seqs], 0)
        r = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
        loss = -F.logsigmoid(r[: len(batch)] - r[len(batch) :]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        n_pairs += len(batch)
    seconds = time.perf_counter() - t0
    return {"pairs_per_second": n_pairs / seconds, "seconds": seconds}


def run_trl(model_dir: str, enc, args, out: Path, strategy: str | None) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    # Pre-tokenised with our ids: TRL skips its own processing, so both see identical tokens.
    ds = Dataset.from_dict(
        {
            "chosen_ids": [p.chosen for p in enc],
            "rejected_ids": [p.rejected for p in enc],
            "length": [len(p) for p in enc],
        }
    )
    kwargs = dict(
        output_dir=str(out / f"trl_{strategy or 'default'}"), per_device_train_batch_size=args.batch_size,
        max_steps=args.steps, learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0,
        gradient_checkpointing=False, bf16=False, fp16=False, max_length=args.max_length,
        disable_dropout=False,  # TRL turns dropout off by default; ours and the raw loop keep it
        logging_steps=10_000, save_strategy="no", report_to=[], use_cpu=True, seed=0,
        dataloader_num_workers=0, disable_tqdm=True, max_grad_norm=1.0,
    )  # fmt: skip
    if strategy:
        # Keep the "length" column for the sampler (TRL's collator ignores columns it does not use).
        kwargs.update(
            train_sampling_strategy=strategy, length_column_name="length", remove_unused_columns=False
        )
    trainer = RewardTrainer(model=model, args=RewardConfig(**kwargs), train_dataset=ds, processing_class=tok)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    return {"pairs_per_second": args.steps * args.batch_size / seconds, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="model folder (default: a tiny GLM built locally)")
    p.add_argument("--pairs", type=int, default=512)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=3, help="rounds per run (best round is reported)")
    p.add_argument("--out", default=str(HERE / "results" / "rm_throughput.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "score head missing" load tables, three times over
    hf_logging.disable_progress_bar()
    comparisons = synthetic_comparisons(args.pairs, seed=0)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = args.model or build_model_dir(tmp, comparisons)
        _, batches, enc = run_ours(model_dir, comparisons, args, tmp)  # also a warm-up, not counted
        from chatglm_rlhf.reward.model import load_rm_tokenizer

        pad_id = load_rm_tokenizer(model_dir).pad_token_id
        order = list(range(len(enc)))
        random.Random(0).shuffle(order)
        shuffled = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
        runs = {
            "ours": lambda: run_ours(model_dir, comparisons, args, tmp)[0],
            "raw_same": lambda: run_raw(model_dir, enc, batches, args, pad_id),
            "raw_random": lambda: run_raw(model_dir, enc, shuffled, args, pad_id),
        }
        try:
            import trl  # noqa: F401
        except ImportError:
            print("TRL is not installed: skipping the TRL comparison", file=sys.stderr)
        else:
            runs["trl"] = lambda: run_trl(model_dir, enc, args, tmp, None)
            runs["trl_grouped"] = lambda: run_trl(model_dir, enc, args, tmp, "group_by_length")
        # Rounds with a rotating order, best of the rounds per run: a shared machine's load changes
        # during a benchmark, and a fixed order would hand one run the quiet minutes every time.
        samples: dict[str, list[dict]] = {}
        names = list(runs)
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                samples.setdefault(name, []).append(runs[name]())
        results = {n: max(v, key=lambda x: x["pairs_per_second"]) for n, v in samples.items()}
    report(results, args, model_dir if args.model else "tiny GLM (hidden 128, 4 layers, built locally)")
    return 0


def report(results: dict[str, dict], args, model_name: str) -> None:
    ours = results["ours"]["pairs_per_second"]
    print(f"model: {model_name}; {args.steps} steps x {args.batch_size} pairs, max_length {args.max_length}")
    print(f"{'run':<14} {'pairs/s':>9} {'seconds':>8} {'ours / run':>10}")
    ratios = {}
    for name, r in results.items():
        ratios[name] = ours / r["pairs_per_second"]
        print(f"{name:<14} {r['pairs_per_second']:>9.2f} {r['seconds']:>8.2f} {ratios[name]:>10.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model_name,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "torch_threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "results": results,
        "ours_over": ratios,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    sys.exit(main())
