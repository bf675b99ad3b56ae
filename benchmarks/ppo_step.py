"""Where one PPO iteration spends its time, our generation vs raw ``generate``, and peak memory of the
shared vs separate actor/critic backbones.

1. **Time split** of a PPO iteration (separate critic, the default): generate (``HFGenerator``),
   score (decode + reward model), forward (old log-probs, reference log-probs, values; no grad) and
   train (``update_epochs`` of minibatch updates). The first ``--warmup`` iterations are excluded; the
   rest are averaged.
2. **Generation overhead**: our ``HFGenerator.generate`` (length-sorted batches, left padding, eos cut)
   against one raw ``model.generate`` call on the same left-padded prompts with the same sampling
   settings and seed; the ratio is ours / raw (best of ``--repeats``).
3. **Peak memory** of one PPO iteration with a shared backbone and with a separate critic, each in a
   fresh subprocess, on a bigger model (``--mem-hidden``, ``--mem-layers``) so weights dominate: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the rise of the process's
   peak RSS (``ru_maxrss``) over its RSS after imports.

The policy is a tiny GLM (``--hidden``, ``--layers``) with a BPE tokenizer trained on the demo world;
the reward model is a sequence scorer with the same backbone (``reward_model_from_causal``).

    python benchmarks/ppo_step.py         # prints a table, writes benchmarks/results/ppo_step.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from chatglm_rlhf.models.generation import GenerationSettings, HFGenerator, _left_pad
from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer
from chatglm_rlhf.policy.online.config import PPOConfig
from chatglm_rlhf.policy.online.critic import build_models
from chatglm_rlhf.policy.online.loop import OnlineTrainer
from chatglm_rlhf.tasks.demo import DemoWorld
from chatglm_rlhf.tasks.demo.demonstrations import tokenizer_corpus
from chatglm_rlhf.utils.training import read_metrics, rss_mb


def setup(args):
    world = DemoWorld(seed=0)
    tok = train_tokenizer(tokenizer_corpus(world, 1500), vocab_size=args.vocab)
    policy = build_tiny_model(
        tok, hidden_size=args.hidden, num_layers=args.layers, num_heads=4, num_kv_heads=4
    )
    prompts = world.prompts("rl", args.batch * (args.warmup + args.iters))
    return tok, policy.to(args.device), prompts


def make_scorer(policy, tok, device):
    from chatglm_rlhf.reward.model import reward_model_from_causal
    from chatglm_rlhf.reward.scorer import RewardScorer

    return RewardScorer(reward_model_from_causal(policy, tok).to(device).eval(), tok, batch_size=64)


def ppo_config(args, out: str, steps: int) -> PPOConfig:
    return PPOConfig(
        output_dir=out, steps=steps, rollout_batch_size=args.batch, mini_batch_size=args.batch // 2,
        forward_batch_size=args.batch, update_epochs=2, lr=1e-5, prompt_filter=False, ptx_coef=0.0,
        generation=GenerationSettings(max_new_tokens=args.new_tokens, batch_size=args.batch),
        cpu=args.device == "cpu", mixed_precision="no", progress=False, seed=0,
    )  # fmt: skip


def time_split(args) -> dict:
    tok, policy, prompts = setup(args)
    scorer = make_scorer(policy, tok, args.device)
    with tempfile.TemporaryDirectory() as out:
        models = build_models(policy, tok, shared_backbone=False)
        OnlineTrainer(ppo_config(args, out, args.warmup + args.iters), models, scorer, prompts).train()
        rows = read_metrics(Path(out) / "metrics.jsonl")[args.warmup :]
    keys = ("time/generate", "time/score", "time/forward", "time/train")
    split = {k.split("/")[1]: sum(r[k] for r in rows) / len(rows) for k in keys}
    total = sum(split.values())
    return {
        "seconds": split,
        "share": {k: v / total for k, v in split.items()},
        "iteration_s": total,
        "response_len": sum(r["response_len"] for r in rows) / len(rows),
        "tokens_per_s_generate": sum(r["tokens_per_s/generate"] for r in rows) / len(rows),
        "tokens_per_s_train": sum(r["tokens_per_s/train"] for r in rows) / len(rows),
    }


def generation_ratio(args) -> dict:
    from chatglm_rlhf.data.templates import prompt_ids

    tok, policy, prompts = setup(args)
    ids = [prompt_ids(tok, s)[0] for s in prompts[: args.batch]]
    settings = GenerationSettings(max_new_tokens=args.new_tokens, batch_size=args.batch)
    gen = HFGenerator(policy, tok)
    pad = tok.pad_token_id

    def ours() -> None:
        gen.generate(ids, 1, settings, seed=0)

    def raw() -> None:
        torch.manual_seed(0)
        x, mask = _left_pad(ids, pad, args.device)
        with torch.no_grad():
            policy.generate(
                input_ids=x, attention_mask=mask, max_new_tokens=args.new_tokens, do_sample=True,
                temperature=1.0, top_p=1.0, top_k=0, pad_token_id=pad, eos_token_id=tok.eos_token_id,
            )  # fmt: skip

    policy.eval()
    times = {"ours": [], "raw": []}
    for _ in range(args.repeats):
        for name, fn in (("raw", raw), ("ours", ours)):
            t0 = time.perf_counter()
            fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    return {"ours_s": best["ours"], "raw_s": best["raw"], "ratio_ours_over_raw": best["ours"] / best["raw"]}


def memory_child(args) -> dict:
    """One PPO iteration with ``--memory-child shared|separate``; prints its peak memory as JSON."""
    start_rss = rss_mb()
    tok, policy, prompts = setup(args)
    scorer = make_scorer(policy, tok, args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    models = build_models(policy, tok, shared_backbone=args.memory_child == "shared")
    params = sum(p.numel() for mod in models.trainable for p in mod.parameters())
    with tempfile.TemporaryDirectory() as out:
        OnlineTrainer(ppo_config(args, out, 1), models, scorer, prompts).train()
    if args.device.startswith("cuda"):
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        how = "cuda max_memory_allocated above the RM + policy"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - start_rss
        how = "peak RSS rise over the RSS after imports"
    return {"peak_mb": peak, "trainable_params": params, "measure": how}


def memory(args) -> dict:
    out = {}
    for mode in ("shared", "separate"):
        cmd = [sys.executable, __file__, "--memory-child", mode, "--device", args.device]
        cmd += [
            "--hidden",
            str(args.mem_hidden),
            "--layers",
            str(args.mem_layers),
            "--vocab",
            str(args.vocab),
        ]
        cmd += ["--batch", str(args.batch), "--new-tokens", str(args.new_tokens)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument(
        "--mem-hidden", type=int, default=512, help="memory test: a bigger model, so weights dominate"
    )
    p.add_argument("--mem-layers", type=int, default=8)
    p.add_argument("--batch", type=int, default=32, help="prompts per rollout")
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-child", choices=("shared", "separate"), help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "ppo_step.json"))
    args = p.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return
    res = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("memory_child", "out")},
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "time_split": time_split(args),
        "generation": generation_ratio(args),
        "memory": memory(args),
    }
    if args.device.startswith("cuda"):
        res["machine"]["gpu"] = torch.cuda.get_device_name()
    ts, g, mem = res["time_split"], res["generation"], res["memory"]
    print(
        f"PPO iteration ({args.batch} prompts, <= {args.new_tokens} new tokens, {args.device}): {ts['iteration_s']:.2f}s"
    )
    for k, v in ts["seconds"].items():
        print(f"  {k:<9} {v:7.3f}s  {100 * ts['share'][k]:5.1f}%")
    print(
        f"generation: ours {g['ours_s']:.3f}s, raw generate {g['raw_s']:.3f}s, ratio {g['ratio_ours_over_raw']:.3f}"
    )
    for mode, m in mem.items():
        print(
            f"peak memory, {mode:<8} backbone ({args.mem_hidden}x{args.mem_layers}): {m['peak_mb']:8.1f} MB"
            f"  ({m['trainable_params']:,} trainable params)"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
