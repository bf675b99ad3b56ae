"""PPO rollouts on ``hf`` vs ``vllm``: one PPO iteration of the real profile (SmolLM2-135M-Instruct + a
MiniLM reward model), side by side in one run, at the same dtype, batch and threads.

1. **Generation**: greedy answers to the same ``--batch`` prompts from our ``HFGenerator`` and from the
   vLLM engine, tokens/s of each (one timed call after a warm-up call), and whether the answers are
   identical (else the first differing prompt and token position are shown).
2. **A PPO iteration** with ``generation.backend`` = hf and = vllm, each in a fresh subprocess (so peak
   RSS is that backend's own), alternating ``--repeats`` times (hf, vllm, hf, vllm, ...): the trainer's
   own time split (generate, score, forward, train, sync), the engine's start-up (vllm: building the
   generator, outside the iteration), peak RSS; medians over the repeats. The iteration's speed-up is set
   beside its bound, the speed-up if generation were free: hf iteration / (hf iteration - hf generate).

Threads: torch runs ``--threads`` threads and vLLM's CPU engine is bound to the same number of cores
(``VLLM_CPU_OMP_THREADS_BIND``). dtype: fp32 for both unless ``--dtype bfloat16`` (vLLM only; then the
answers may differ). Run it in .venv-vllm (``REAL_MODELS=1 scripts/setup_vllm_env.sh``), which has both:

    .venv-vllm/bin/python benchmarks/rollout_backends.py   # table + benchmarks/results/rollout_backends.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_step import minilm_dir, ppo_config, prompts  # noqa: E402  (the real profile's benchmark setup)


def bind_threads(threads: int) -> None:
    import torch

    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{threads - 1}" if threads > 1 else "0"
    torch.set_num_threads(threads)


def settings(args, backend: str, greedy: bool):
    from chatglm_rlhf.models.generation import GenerationSettings, VLLMSettings

    v = VLLMSettings(dtype=args.dtype, max_model_len=args.prompt_tokens + args.new_tokens + 8)
    return GenerationSettings(
        max_new_tokens=args.new_tokens, batch_size=args.batch, greedy=greedy, backend=backend, vllm=v
    )


def generation(args) -> dict:
    """Greedy tokens/s of both generators on the same prompts, and whether their answers agree."""
    from chatglm_rlhf.data.templates import prompt_ids
    from chatglm_rlhf.models.generation import make_generator
    from chatglm_rlhf.models.gguf import smollm2_checkpoint
    from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer

    path = str(smollm2_checkpoint())
    tok, model = load_tokenizer(path), load_causal_lm(path, dtype="fp32", device="cpu").eval()
    samples, _ = prompts(args.batch)
    ids = [prompt_ids(tok, s, args.prompt_tokens)[0] for s in samples]
    out: dict = {}
    answers = {}
    for backend in ("hf", "vllm"):
        s = settings(args, backend, greedy=True)
        t0 = time.perf_counter()
        gen = make_generator(model, tok, s)
        start = time.perf_counter() - t0
        gen.generate(ids, 1, s, seed=0)  # warm-up: one-off allocations (and vLLM's first-call compiles)
        t0 = time.perf_counter()
        res = gen.generate(ids, 1, s, seed=0)
        secs = time.perf_counter() - t0
        answers[backend] = [g[0].response_ids for g in res]
        n = sum(len(a) for a in answers[backend])
        out[backend] = {"seconds": secs, "tokens": n, "tokens_per_s": n / secs, "start_s": start}
    out["ratio_vllm_over_hf_tokens_per_s"] = out["vllm"]["tokens_per_s"] / out["hf"]["tokens_per_s"]
    out["identical"] = answers["hf"] == answers["vllm"]
    out["first_difference"] = first_difference(answers["hf"], answers["vllm"], tok)
    return out


def first_difference(a: list[list[int]], b: list[list[int]], tok) -> dict | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            j = next((k for k, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            return {"prompt": i, "token": j, "hf": tok.decode(x[j : j + 8]), "vllm": tok.decode(y[j : j + 8])}
    return None


def iteration_child(args) -> dict:
    """PPO iterations on ``--child`` (hf | vllm); prints the time split, start-up and peak RSS as JSON."""
    from chatglm_rlhf.models.generation import make_generator
    from chatglm_rlhf.models.gguf import smollm2_checkpoint
    from chatglm_rlhf.policy.online.loop import OnlineTrainer
    from chatglm_rlhf.policy.online.stage import load_models as _load_models
    from chatglm_rlhf.reward.scorer import RewardScorer
    from chatglm_rlhf.utils.training import read_metrics, rss_mb

    start_rss = rss_mb()
    samples, _ = prompts(args.batch * (args.warmup + args.iters))
    scorer = RewardScorer.from_pretrained(minilm_dir(), device="cpu", max_length=256, batch_size=32)
    sft = [(s, "I'm sorry, I can't help with that.") for s in samples]  # ptx rows: cost only
    with tempfile.TemporaryDirectory() as out:
        cfg = ppo_config(args, str(smollm2_checkpoint()), out, 0)
        cfg.generation = settings(args, args.child, greedy=False)
        models = _load_models(cfg, "cpu")
        t0 = time.perf_counter()
        gen = make_generator(models.actor, models.tokenizer, cfg.generation)
        start = time.perf_counter() - t0
        OnlineTrainer(cfg, models, scorer, samples, sft, generator=gen).train()
        rows = read_metrics(Path(out) / "metrics.jsonl")[args.warmup :]
    keys = ("generate", "score", "forward", "train", "sync")
    split = {k: statistics.mean(r.get(f"time/{k}", 0.0) for r in rows) for k in keys}
    gap = [r["health/engine_logprob_gap"] for r in rows if "health/engine_logprob_gap" in r]
    return {
        "seconds": split,
        "iteration_s": sum(split.values()),
        "start_s": start,
        "generate_tokens_per_s": statistics.mean(r["tokens_per_s/generate"] for r in rows),
        "response_len": statistics.mean(r["response_len"] for r in rows),
        "engine_logprob_gap": statistics.mean(gap) if gap else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_imports_mb": start_rss,
    }


def run_child(args, backend: str) -> dict:
    cmd = [sys.executable, __file__, "--child", backend]
    for key in (
        "batch",
        "mini_batch",
        "new_tokens",
        "prompt_tokens",
        "warmup",
        "iters",
        "ptx_batch",
        "threads",
    ):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    cmd += ["--ptx-coef", str(args.ptx_coef), "--dtype", args.dtype]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{backend} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def medians(runs: list[dict]) -> dict:
    keys = ("generate", "score", "forward", "train", "sync")
    out = {"seconds": {k: statistics.median(r["seconds"][k] for r in runs) for k in keys}}
    for k in ("iteration_s", "start_s", "generate_tokens_per_s", "response_len", "peak_rss_mb"):
        out[k] = statistics.median(r[k] for r in runs)
    gaps = [r["engine_logprob_gap"] for r in runs if r["engine_logprob_gap"] is not None]
    out["engine_logprob_gap"] = statistics.median(gaps) if gaps else None
    return out


def report(res: dict) -> None:
    g = res["generation"]
    print(
        f"generation (greedy, {res['settings']['batch']} prompts, fp32 hf, {res['settings']['dtype']} vllm):"
    )
    for b in ("hf", "vllm"):
        print(
            f"  {b:<5} {g[b]['tokens_per_s']:7.1f} tok/s  ({g[b]['tokens']} tokens, start {g[b]['start_s']:.1f}s)"
        )
    print(f"  vllm / hf: {g['ratio_vllm_over_hf_tokens_per_s']:.2f}x; answers identical: {g['identical']}")
    if g["first_difference"]:
        print(f"  first difference: {g['first_difference']}")
    print(f"PPO iteration, medians of {res['settings']['repeats']} alternating runs each:")
    print(f"  {'backend':<7} {'generate':>9} {'score':>7} {'forward':>8} {'train':>7} {'sync':>6} {'total':>7} "
          f"{'start':>6} {'gen tok/s':>9} {'peak RSS':>9}")  # fmt: skip
    for b in ("hf", "vllm"):
        m, s = res["ppo"][b], res["ppo"][b]["seconds"]
        print(f"  {b:<7} {s['generate']:8.1f}s {s['score']:6.1f}s {s['forward']:7.1f}s {s['train']:6.1f}s "
              f"{s['sync']:5.2f}s {m['iteration_s']:6.1f}s {m['start_s']:5.1f}s {m['generate_tokens_per_s']:9.1f} "
              f"{m['peak_rss_mb'] / 1024:7.2f} GB")  # fmt: skip
    sp = res["speedup"]
    print(f"  iteration speed-up {sp['iteration']:.2f}x, bound (free generation) {sp['bound']:.2f}x: "
          f"{sp['share_of_bound']:.0%} of the bound ({sp['share_of_gain']:.0%} of the possible gain); "
          f"rollout generation {sp['generate']:.2f}x")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="prompts per rollout (the real profile's)")
    p.add_argument("--mini-batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--prompt-tokens", type=int, default=192)
    p.add_argument(
        "--warmup", type=int, default=1, help="iterations not averaged (vLLM's first call compiles)"
    )
    p.add_argument("--iters", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="alternating runs per backend (medians)")
    p.add_argument("--ptx-coef", type=float, default=0.1)
    p.add_argument("--ptx-batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch threads = cores vLLM is bound to")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="the vLLM engine's")
    p.add_argument("--child", choices=("hf", "vllm"), help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "rollout_backends.json"))
    args = p.parse_args()
    args.separate_critic = False  # real_step.ppo_config reads it: the profile's shared backbone
    bind_threads(args.threads)
    if args.child:
        print(json.dumps(iteration_child(args)))
        return
    import torch

    runs: dict[str, list[dict]] = {"hf": [], "vllm": []}
    for _ in range(args.repeats):
        for b in ("hf", "vllm"):
            runs[b].append(run_child(args, b))
    res = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("child", "out")},
        "prompts": prompts(1)[1],
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
        "generation": generation(args),
        "ppo": {b: medians(r) for b, r in runs.items()},
        "runs": runs,
    }
    hf, vl = res["ppo"]["hf"], res["ppo"]["vllm"]
    bound = hf["iteration_s"] / max(hf["iteration_s"] - hf["seconds"]["generate"], 1e-9)
    speed = hf["iteration_s"] / vl["iteration_s"]
    res["speedup"] = {
        "iteration": speed, "bound": bound, "share_of_bound": speed / bound,
        "share_of_gain": (speed - 1) / max(bound - 1, 1e-9),
        "generate": hf["seconds"]["generate"] / max(vl["seconds"]["generate"], 1e-9),
    }  # fmt: skip
    report(res)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
