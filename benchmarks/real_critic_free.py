"""The real profile's PPO (shared actor/critic backbone) against the critic-free trainer, per iteration.

Takes a finished real-profile run folder (its proxy RM, RL prompts, ptx data and the ppo / pg sections of
its config.json), trains each for ``--steps`` iterations in fresh subprocesses, alternating ppo, pg, ppo,
pg, ... ``--repeats`` times, and reports the median over steps 2.. of generate + score + forward + train
(+ sync) per iteration and each process's peak RSS (/usr/bin/time -v). Run it on an idle machine.

    .venv-vllm/bin/python benchmarks/real_critic_free.py out/real_cf [--estimator rloo] [--threads 2]
    (prints a table, writes benchmarks/results/real_critic_free.json)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def one(run: Path, algo: str, out: Path, args) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    ptx = run / "data" / "ptx.jsonl"
    section = {**cfg[algo], "model": json.loads((run / "data/checkpoint.json").read_text())["path"],
               "reward_model": str(run / "models/rm"), "prompts": str(run / "data/rl_prompts.jsonl"),
               "sft_data": str(ptx if ptx.exists() else run / "data/sft.jsonl"), "steps": args.steps,
               "progress": False, "threads": args.threads, "report_to": "none", "output_dir": str(out)}  # fmt: skip
    if algo == "pg":
        section["estimator"] = args.estimator
    recipe = out.with_suffix(".yaml")  # the run's section as the command's recipe (its `ppo:` / `pg:` part)
    recipe.write_text(yaml.safe_dump({algo: section}))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(args.threads)}
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "chatglm_rlhf.cli.main",
        algo,
        "--config",
        str(recipe),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(f"{algo} failed:\n{p.stderr[-3000:]}")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    per = [sum(v for k, v in r.items() if k.startswith("time/")) for r in rows][1:]
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return {"algo": algo, "s_per_iteration": statistics.median(per), "steps": per,
            "peak_rss_gb": int(rss.group(1)) / 1e6 if rss else None}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a finished real-profile run folder")
    ap.add_argument("--estimator", default="rloo")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/real_critic_free.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for algo in ("ppo", "pg"):
                rows.append(one(args.run, algo, Path(tmp) / f"{algo}{i}", args))
                print(rows[-1], flush=True)
    med = {a: statistics.median(r["s_per_iteration"] for r in rows if r["algo"] == a) for a in ("ppo", "pg")}
    print(f"| trainer | s / iteration (median of {args.repeats}) | peak RSS GB |\n|---|---|---|")
    for a in ("ppo", "pg"):
        rss = [r["peak_rss_gb"] for r in rows if r["algo"] == a]
        print(f"| {a} | {med[a]:.1f} ({med[a] / med['ppo']:.2f}x) | {', '.join(f'{x:.2f}' for x in rss)} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"run": str(args.run), "estimator": args.estimator, "threads": args.threads,
                                     "rows": rows, "median": med}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
