"""bf16 autocast vs fp32 for the real profile's PPO iteration on this CPU, side by side in one run.

The real profile's own PPO settings (``pipeline/profiles/real.py``: SmolLM2-135M-Instruct, LoRA r=16,
the critic on the shared backbone, 8 prompts x 48 new tokens, 2 update epochs; MiniLM reward model) run
``--iters`` measured iterations after ``--warmup`` with ``mixed_precision=no`` and ``=bf16`` (accelerate's
CPU autocast: the forward and backward matmuls in bf16; the token log-probs, ratios, advantages and the
loss in fp32, ``policy/losses.token_logprobs``), for each of ``--seeds``, each run in its own process,
alternating precisions so that machine noise falls on both alike.

Reported: the time per iteration and its split (generate, score, forward, train: the sampler runs
outside autocast) per precision (median over seeds x iterations) and the ratio fp32 / bf16; and the
training statistics (clip fraction, approximate KL of the update, KL to the reference, reward) per run,
with fp32's seed-to-seed spread beside bf16's difference from fp32 at the same seed.

    python benchmarks/bf16_step.py      # writes benchmarks/results/bf16_step.json and prints a table
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from real_step import minilm_dir, prompts  # noqa: E402

STATS = ("policy/clip_frac", "policy/approx_kl", "kl", "reward/raw")
PARTS = ("time/generate", "time/score", "time/forward", "time/train")


def child(variant: str, seed: int, warmup: int, iters: int) -> dict:
    precision, gen_bf16 = ("bf16", True) if variant == "bf16+gen" else (variant, False)
    from chatglm_rlhf.models.gguf import smollm2_checkpoint
    from chatglm_rlhf.pipeline.profiles.real import ppo_defaults
    from chatglm_rlhf.policy.online.loop import OnlineTrainer
    from chatglm_rlhf.policy.online.stage import load_models
    from chatglm_rlhf.reward.scorer import RewardScorer
    from chatglm_rlhf.utils.training import read_metrics

    base = ppo_defaults()
    samples, _ = prompts(base.rollout_batch_size * (warmup + iters))
    scorer = RewardScorer.from_pretrained(minilm_dir(), device="cpu", max_length=256, batch_size=32)
    sft = [(s, "I'm sorry, I can't help with that.") for s in samples]  # ptx rows: cost only
    with tempfile.TemporaryDirectory() as out:
        cfg = dataclasses.replace(
            base, model=str(smollm2_checkpoint()), output_dir=out, steps=warmup + iters, seed=seed,
            mixed_precision=precision, prompt_filter=False, progress=False, report_to="none",
        )  # fmt: skip
        trainer = OnlineTrainer(cfg, load_models(cfg, "cpu"), scorer, samples, sft)
        if gen_bf16:  # the sampler under the same autocast (a measurement: the loop samples in fp32)
            generate = trainer.generator.generate

            def autocast_generate(*a, **kw):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return generate(*a, **kw)

            trainer.generator.generate = autocast_generate
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
        rows = read_metrics(Path(out) / "metrics.jsonl")
    measured = rows[warmup:]
    return {
        "precision": variant, "seed": seed, "wall_s": wall,
        "iteration_s": [sum(r[k] for k in PARTS) for r in measured],
        "split_s": {k.split("/")[1]: statistics.mean(r[k] for r in measured) for k in PARTS},
        "stats": {k: [r.get(k) for r in rows] for k in STATS},
    }  # fmt: skip


def run_child(args, precision: str, seed: int) -> dict:
    cmd = [sys.executable, __file__, "--child", precision, "--seed", str(seed), "--warmup", str(args.warmup),
           "--iters", str(args.iters), "--threads", str(args.threads)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{precision} seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(runs: list[dict]) -> dict:
    variants = list(dict.fromkeys(r["precision"] for r in runs))
    by = {v: [r for r in runs if r["precision"] == v] for v in variants}
    med = {v: statistics.median(t for r in rs for t in r["iteration_s"]) for v, rs in by.items()}
    out = {
        "median_iteration_s": med,
        "speedup_over_fp32": {v: med["no"] / med[v] for v in variants},
        "stats": {},
    }
    seeds = sorted({r["seed"] for r in runs})
    for k in STATS:
        fp32 = {r["seed"]: r["stats"][k] for r in by["no"]}
        n = min(len(v) for r in runs for v in [r["stats"][k]])
        # per step: fp32's spread over seeds, and each variant's largest distance from fp32 at the same seed
        spread = [max(fp32[s][i] for s in seeds) - min(fp32[s][i] for s in seeds) for i in range(n)]
        out["stats"][k] = {"fp32_seed_spread": spread}
        for v in variants[1:]:
            other = {r["seed"]: r["stats"][k] for r in by[v]}
            gap = [max(abs(other[s][i] - fp32[s][i]) for s in seeds) for i in range(n)]
            out["stats"][k][v] = {
                "minus_fp32_max": gap,
                "within_spread": all(g <= sp for g, sp in zip(gap, spread)),
            }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument(
        "--threads", type=int, default=2, help="torch threads (the real profile's: torch's default)"
    )
    p.add_argument(
        "--variants",
        default="no,bf16,bf16+gen",
        help="no (fp32), bf16 (forward/backward), bf16+gen (and sampling)",
    )
    p.add_argument("--child", choices=("no", "bf16", "bf16+gen"), help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "bf16_step.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, args.seed, args.warmup, args.iters)))
        return
    variants = args.variants.split(",")
    runs = [run_child(args, v, int(s)) for s in args.seeds.split(",") for v in variants]
    res = {"settings": vars(args), "machine": {"platform": platform.platform(), "torch": torch.__version__,
           "cpu_bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text()}, "runs": runs, "summary": summary(runs)}  # fmt: skip
    s = res["summary"]
    print(f"PPO iteration, real profile settings, {args.threads} threads; seeds {args.seeds}")
    print(f"{'precision':<9} {'median s':>9}  split (mean s: generate / score / forward / train)")
    for v in variants:
        splits = [r["split_s"] for r in runs if r["precision"] == v]
        mean = {k: statistics.mean(x[k] for x in splits) for k in splits[0]}
        print(f"{'fp32' if v == 'no' else v:<9} {s['median_iteration_s'][v]:9.1f}  "
              + " / ".join(f"{x:.1f}" for x in mean.values()) + f"   speed-up {s['speedup_over_fp32'][v]:.2f}x")  # fmt: skip
    for k, st in s["stats"].items():
        line = f"{k:<18} fp32 seed spread (max) {max(st['fp32_seed_spread']):.4g}"
        for v in variants[1:]:
            line += f"; {v} - fp32 (max) {max(st[v]['minus_fp32_max']):.4g} within: {st[v]['within_spread']}"
        print(line)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
