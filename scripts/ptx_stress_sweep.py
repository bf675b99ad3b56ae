"""Choose the ptx_stress ablation's setting on dev data: for each (lr_scale, steps_scale), the demo pipeline
with ``ablations=[ptx_stress]`` in one run folder, then the capability probe's DEV items and the dev prompts.

    python scripts/ptx_stress_sweep.py RUN [--settings 4x1,8x1,16x1] [key=value ...]   (the run's overrides)

Each setting reruns the pipeline in RUN (resumable: world, SFT, RM and the main PPO are reused; only
ppo_stress, ppo_stress_noptx, evaluate and probe are redone), with ``algorithms=[ppo]`` (no DPO),
``ceiling_n=0`` (no best-of-n ceiling) and ``eval_prompts=dev_prompts`` (the gold win rate on the dev
prompts, never the evaluation prompts). Only the probe's dev items are printed and tabled (the test items
are the reported metric: never looked at while choosing). Writes RUN/sweep/ptx_stress_sweep.json (one row
per setting, appended) and keeps each setting's terminal log and the stress twins' probe replies
(RUN/sweep/ptx_stress_<lr>x<steps>/) there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

SWEEP_OVERRIDES = ["progress=false", "algorithms=[ppo]", "ablations=[ptx_stress]", "ceiling_n=0",
                   "eval_prompts=dev_prompts"]  # fmt: skip
POLICIES = ("sft", "ppo", "ppo_stress", "ppo_stress_noptx")


def row_of(metrics: dict, lr_scale: float, steps_scale: float, seconds: float) -> dict:
    """The setting's dev figures: probe dev accuracy per model and drops from SFT, and per policy its final
    KL, held-out SFT loss and gold win rate on the dev prompts."""
    probe = metrics.get("probe", {})
    dev = {p: probe.get(p, {}).get("by_split", {}).get("dev") for p in POLICIES}
    row: dict = {"lr_scale": lr_scale, "steps_scale": steps_scale, "seconds": round(seconds, 1),
                 "probe_dev": dev}  # fmt: skip
    for p in POLICIES[1:]:
        m, ev = metrics.get(p, {}), metrics.get("evaluate", {}).get(p, {})
        row[p] = {
            "probe_dev_drop": None if dev[p] is None or dev["sft"] is None else dev["sft"] - dev[p],
            "kl_final": m.get("kl_final"),
            "sft_heldout_loss": m.get("sft_heldout_loss"),
            "sft_heldout_loss_before": m.get("sft_heldout_loss_before"),
            "gold_win_rate_dev": ev.get("gold_win_rate_vs_sft"),
            "gold_score_dev": ev.get("gold_score"),
            "steps": m.get("steps"),
        }
    return row


def fmt(x, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--settings", default="4x1,8x1,16x1", help="LRxSTEPS scales, comma-separated")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_intermixed_args()
    run = Path(args.run)
    sweep = run / "sweep"
    sweep.mkdir(parents=True, exist_ok=True)
    out = sweep / "ptx_stress_sweep.json"
    rows = json.loads(out.read_text()) if out.exists() else []
    cli = [sys.executable, "-c", "import sys; from chatglm_rlhf.cli.main import main; sys.exit(main())"]
    for setting in args.settings.split(","):
        lr_scale, steps_scale = (float(x) for x in setting.split("x"))
        cmd = [*cli, "demo", "--out", str(run), *SWEEP_OVERRIDES, *args.overrides,
               f"ptx_stress.lr_scale={lr_scale:g}", f"ptx_stress.steps_scale={steps_scale:g}"]  # fmt: skip
        log = sweep / f"ptx_stress_{lr_scale:g}x{steps_scale:g}.log"
        print("$", " ".join(cmd[3:]), ">", log, flush=True)
        t0 = time.time()
        with log.open("w") as f:
            subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True)
        metrics = json.loads((run / "metrics.json").read_text())
        keep = sweep / f"ptx_stress_{lr_scale:g}x{steps_scale:g}"  # the replies, before the next setting
        keep.mkdir(exist_ok=True)
        for p in POLICIES[2:]:
            shutil.copy(run / "eval" / f"probe_{p}.json", keep / f"probe_{p}.json")
        rows.append(row_of(metrics, lr_scale, steps_scale, time.time() - t0))
        out.write_text(json.dumps(rows, indent=2))
        r = rows[-1]
        print(f"  {setting}: {r['seconds']:.0f}s, probe dev sft {fmt(r['probe_dev']['sft'])}", flush=True)
    print(f"{'lr x steps':>10} {'policy':>17} {'probe dev':>9} {'drop':>7} {'KL':>6} {'SFT loss':>8} "
          f"{'gold win (dev)':>14}")  # fmt: skip
    for r in rows:
        for p in POLICIES[1:]:
            m = r[p]
            print(f"{r['lr_scale']:g}x{r['steps_scale']:g}".rjust(10), f"{p:>17} {fmt(r['probe_dev'][p]):>9} "
                  f"{fmt(m['probe_dev_drop'], '+.3f'):>7} {fmt(m['kl_final'], '.2f'):>6} "
                  f"{fmt(m['sft_heldout_loss']):>8} {fmt(m['gold_win_rate_dev']):>14}")  # fmt: skip


if __name__ == "__main__":
    main()
