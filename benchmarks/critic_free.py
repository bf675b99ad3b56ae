"""Critic-free policy optimisation (``pg``) against PPO: time per iteration and peak memory, side by side.

Three trainers on the same tiny demo-world model, at the same number of responses per iteration and
the same number of optimizer updates per iteration (2 epochs x 2 minibatches):

* ``ppo_separate``: PPO with a separate critic (a copy of the policy's body + a value head);
* ``ppo_shared``: PPO with the value head on the actor's backbone (``shared_backbone=true``);
* ``pg``: the critic-free trainer (``--estimator``, GRPO by default): ``batch / k`` prompts x ``k``.

Each measurement is a fresh subprocess (so peak memory is that run's alone), and the modes alternate
(ppo_separate, ppo_shared, pg, ppo_separate, ...) ``--repeats`` times, so a machine that slows down or
speeds up during the run affects all of them alike; the table shows medians. Time per iteration is the
sum of generate + score + forward + train from the trainers' metrics, the first ``--warmup`` iterations
left out (prompt preparation too). Memory: on CUDA ``torch.cuda.max_memory_allocated`` above the models;
on CPU the rise of the process's peak RSS (``ru_maxrss``) over its RSS after imports: models,
optimizer state and activations (the policy, its frozen reference, the reward model and a critic).

    python benchmarks/critic_free.py     # prints a table, writes benchmarks/results/critic_free.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

MODES = ("ppo_separate", "ppo_shared", "pg")


def setup(args):
    from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer
    from chatglm_rlhf.reward.model import reward_model_from_causal
    from chatglm_rlhf.reward.scorer import RewardScorer
    from chatglm_rlhf.tasks.demo import DemoWorld
    from chatglm_rlhf.tasks.demo.demonstrations import tokenizer_corpus

    world = DemoWorld(seed=0)
    tok = train_tokenizer(tokenizer_corpus(world, 1500), vocab_size=args.vocab)
    policy = build_tiny_model(
        tok, hidden_size=args.hidden, num_layers=args.layers, num_heads=4, num_kv_heads=4
    )
    policy = policy.to(args.device)
    scorer = RewardScorer(reward_model_from_causal(policy, tok).to(args.device).eval(), tok, batch_size=64)
    return tok, policy, scorer, world.prompts("rl", args.batch * (args.warmup + args.iters))


def make_trainer(args, mode: str, out: str):
    """The trainer of ``mode`` with ``args.batch`` responses and 4 updates per iteration."""
    from chatglm_rlhf.models.generation import GenerationSettings

    tok, policy, scorer, prompts = setup(args)
    common = dict(
        output_dir=out, steps=args.warmup + args.iters, mini_batch_size=args.batch // 2, forward_batch_size=args.batch,
        lr=1e-5, prompt_filter=False, ptx_coef=0.0, cpu=args.device == "cpu", mixed_precision="no", progress=False,
        seed=0, generation=GenerationSettings(max_new_tokens=args.new_tokens, batch_size=args.batch),
    )  # fmt: skip
    if mode == "pg":
        import copy

        from chatglm_rlhf.policy.models import ActorWithReference
        from chatglm_rlhf.policy.online.config import PGConfig
        from chatglm_rlhf.policy.online.loop import OnlineTrainer

        cfg = PGConfig(
            estimator=args.estimator,
            rollout_batch_size=args.batch // args.k,
            k=args.k,
            update_epochs=2,
            **common,
        )
        models = ActorWithReference(policy, tok, reference=copy.deepcopy(policy))
        return OnlineTrainer(cfg, models, scorer, prompts)
    from chatglm_rlhf.policy.online.config import PPOConfig
    from chatglm_rlhf.policy.online.critic import build_models
    from chatglm_rlhf.policy.online.loop import OnlineTrainer

    cfg = PPOConfig(rollout_batch_size=args.batch, update_epochs=2, reward_baseline=False, **common)
    return OnlineTrainer(
        cfg, build_models(policy, tok, shared_backbone=mode == "ppo_shared"), scorer, prompts
    )


def child(args) -> dict:
    """One run of ``--child MODE``: its mean iteration time and peak memory, as JSON on stdout."""
    import transformers  # noqa: F401  (imported before the baseline RSS: not part of any trainer's cost)

    from chatglm_rlhf.utils.training import read_metrics, rss_mb

    torch.set_num_threads(args.threads)
    base_rss = rss_mb()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(args, args.child, out)  # the models count: a critic is memory too
        params = sum(p.numel() for m in trainer.models.trainable for p in m.parameters() if p.requires_grad)
        trainer.train()
        rows = read_metrics(Path(out) / "metrics.jsonl")[args.warmup :]
    if args.device.startswith("cuda"):
        peak, how = (
            (torch.cuda.max_memory_allocated() - base) / 2**20,
            "cuda max_memory_allocated (models, optimizer state, activations)",
        )
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
        how = "peak RSS rise over the RSS after imports (models, optimizer state, activations)"
    parts = ("generate", "score", "forward", "train")
    split = {p: statistics.mean(r[f"time/{p}"] for r in rows) for p in parts}
    return {
        "iteration_s": sum(split.values()),
        "seconds": split,
        "peak_mb": peak,
        "trainable_params": params,
        "responses_per_iteration": args.batch,
        "response_len": statistics.mean(r["response_len"] for r in rows),
        "measure": how,
    }


def run_child(args, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode]
    for key in ("device", "hidden", "layers", "vocab", "batch", "k", "new_tokens", "warmup", "iters", "threads",
                "estimator"):  # fmt: skip
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--hidden", type=int, default=128, help="the demo default profile's tiny GLM")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--batch", type=int, default=32, help="responses per iteration (PPO's rollout batch)")
    p.add_argument("--k", type=int, default=4, help="pg: samples per prompt (batch / k prompts)")
    p.add_argument("--estimator", default="grpo")
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="alternating runs per mode (medians shown)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (the machine is shared)")
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "critic_free.json"))
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(args.repeats):
        for mode in MODES:  # alternating: drift of the machine hits every mode alike
            runs[mode].append(run_child(args, mode))
    med = {
        m: {key: statistics.median(r[key] for r in rs) for key in ("iteration_s", "peak_mb", "response_len")}
        | {"trainable_params": rs[0]["trainable_params"]}
        for m, rs in runs.items()
    }
    ref = med["ppo_separate"]
    res = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("child", "out")},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "cpus": _cpus()},
        "runs": runs,
        "median": med,
        "vs_ppo_separate": {
            m: {"time": v["iteration_s"] / ref["iteration_s"], "memory": v["peak_mb"] / ref["peak_mb"]}
            for m, v in med.items()
        },  # fmt: skip
    }
    if args.device.startswith("cuda"):
        res["machine"]["gpu"] = torch.cuda.get_device_name()
    print(f"{args.batch} responses / iteration, <= {args.new_tokens} new tokens, {args.hidden}x{args.layers} "
          f"model, {args.device}, {args.threads} thread(s); medians of {args.repeats} alternating runs")  # fmt: skip
    print(
        f"{'trainer':<14} {'s / iteration':>13} {'x PPO sep.':>10} {'peak MB':>9} {'x PPO sep.':>10} {'trainable':>11}"
    )
    for m, v in med.items():
        r = res["vs_ppo_separate"][m]
        name = f"pg ({args.estimator})" if m == "pg" else m
        print(f"{name:<14} {v['iteration_s']:>13.3f} {r['time']:>10.2f} {v['peak_mb']:>9.1f} {r['memory']:>10.2f} "
              f"{v['trainable_params']:>11,}")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"written to {args.out}")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
