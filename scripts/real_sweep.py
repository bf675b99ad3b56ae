"""A learning-rate x KL-coefficient sweep of one policy algorithm on the real profile, judged on dev only.

One run folder (``OUT/base``) trains everything a policy needs once (checkpoint, data split, filter,
proxy RM, judge RMs: ``--until`` the last judge); each setting then gets a hard-linked copy of it (no
second copy of the weights on disk; every file the pipeline rewrites is replaced by rename, so the base is
never changed) and trains the policy into that copy, then its over-optimisation curve on the **dev**
prompts (``<algorithm>_curve``: every snapshot vs SFT by the proxy RM and each judge RM). Nothing here
reads the held-out prompts, so the setting chosen from this table can be evaluated on them honestly.

    python scripts/real_sweep.py OUT --lr 3e-5,1e-4,3e-4 --kl 0.02,0.1 [key=value ...]
    python scripts/real_sweep.py OUT --table          # the table of what has finished
    python scripts/real_sweep.py OUT --lr 1e-4 --kl 0.05 --tag tp0.3 ppo.truncation_penalty=0.3

The key=value overrides go to every run (base included), e.g. ``ppo.steps=20``. Prints a table and
writes ``OUT/sweep.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _cli(out: Path, overrides: list[str], *flags: str, log: Path) -> None:
    cmd = [sys.executable, "-m", "chatglm_rlhf.cli.main", "demo", "--profile", "real", "--out", str(out),
           "progress=false", *overrides, *flags]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(HERE / "src"), "OMP_NUM_THREADS": "1"}
    with open(log, "a") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if rc:
        sys.exit(f"real_sweep: {' '.join(cmd)} failed (rc {rc}); see {log}")


def _name(lr: str, kl: str, tag: str = "") -> str:
    return f"lr{lr}_kl{kl}" + (f"_{tag}" if tag else "")


def row(run: Path, algorithm: str) -> dict | None:
    """One setting's line: final KL, the dev curve's judges' mean win rate (first, best, final point),
    unfinished rate and answer length at the end."""
    path = run / "metrics.json"
    if not path.exists():
        return None
    m = json.loads(path.read_text())
    pol, curve = m.get(algorithm), m.get(f"{algorithm}_curve")
    if not pol or not curve:
        return None
    pts = curve["points"]
    return {
        "run": run.name,
        "kl_final": pol.get("kl_final"),
        "response_len_mean": pol.get("response_len_mean"),
        "steps": pol.get("steps"),
        "dev_prompts": curve["dev_prompts"],
        "judges_mean_by_step": {p["step"]: p["judges_mean"] for p in pts},
        "proxy_by_step": {p["step"]: p.get("proxy_rm") for p in pts},
        "final_judges_mean": pts[-1]["judges_mean"],
        "final_unfinished": pts[-1]["unfinished_rate"],
        "seconds": m.get("timing", {}).get(algorithm),
    }


def table(out: Path, algorithm: str) -> list[dict]:
    rows = [
        r for d in sorted(out.iterdir()) if d.is_dir() and d.name != "base" for r in [row(d, algorithm)] if r
    ]
    print(
        f"{algorithm} on dev ({rows[0]['dev_prompts'] if rows else 0} prompts), judges' mean win rate vs SFT"
    )
    print("setting | steps | final KL | judges by step | final | unfinished | tokens | s")
    for r in rows:
        curve = " ".join(f"{s}:{v:.3f}" for s, v in r["judges_mean_by_step"].items())
        print(f"{r['run']} | {r['steps']} | {r['kl_final']:.3f} | {curve} | {r['final_judges_mean']:.3f} | "
              f"{r['final_unfinished']:.2f} | {r['response_len_mean']:.1f} | {r['seconds']}")  # fmt: skip
    (out / "sweep.json").write_text(json.dumps(rows, indent=2))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--lr", default="3e-5,1e-4,3e-4", help="comma-separated learning rates")
    ap.add_argument("--kl", default="0.02,0.1", help="comma-separated KL coefficients")
    ap.add_argument("--algorithm", default="ppo", help="ppo | pg (the critic-free trainer) ")
    ap.add_argument("--judges", type=int, default=2, help="judge RMs (the profile's default: 2)")
    ap.add_argument("--table", action="store_true", help="only print the table of finished settings")
    ap.add_argument(
        "--tag", default="", help="appended to each setting's folder name (a second sweep of other keys)"
    )
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    a = ap.parse_intermixed_args()
    if a.table:
        table(a.out, a.algorithm)
        return
    a.out.mkdir(parents=True, exist_ok=True)
    last_judge = "judge_rm" if a.judges == 1 else f"judge_rm_{a.judges}"
    # The LLM judge compares PPO by default, which a sweep of another algorithm does not train.
    no_llm = [] if a.algorithm == "ppo" else ["eval.llm_judge_policies=[]"]
    common = [f"algorithms=[{a.algorithm}]", "ablations=[]", f"judges={a.judges}", *no_llm, *a.overrides]
    base = a.out / "base"
    _cli(base, common, "--until", last_judge, log=a.out / "base.log")
    for lr, kl in itertools.product(a.lr.split(","), a.kl.split(",")):
        run = a.out / _name(lr, kl, a.tag)
        if row(run, a.algorithm):
            continue
        if not run.exists():
            shutil.copytree(base, run, copy_function=os.link)
        keys = [f"{a.algorithm}.lr={lr}", f"{a.algorithm}.kl_coef={kl}"]
        _cli(run, [*common, *keys], "--until", f"{a.algorithm}_curve", log=a.out / f"{run.name}.log")
        print(f"{run.name} done", flush=True)
    table(a.out, a.algorithm)


if __name__ == "__main__":
    main()
