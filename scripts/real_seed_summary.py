"""Means and spreads over seed runs of the real profile: each judge's PPO, DPO and critic-free (pg_*) win
rates vs SFT, the judges' majority, the proxy RM's, the unfinished rate, answer length, final KL, the probe,
the refusal / hedge rate on benign requests, the kept PPO checkpoint and each RM's accuracy on the
held-out human pairs.

usage: python scripts/real_seed_summary.py RUN_DIR [RUN_DIR ...]   (writes seeds.json beside the first run)
Every figure is read from the runs' metrics.json; nothing is tuned here.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def one_run(run: Path) -> dict:
    """The figures of one run: {policy: {judge: win_rate, ...}}, the probe and the kept step."""
    m = json.loads((run / "metrics.json").read_text())
    ev, timing = m["evaluate"], m.get("timing") or {}
    judges = [*ev.get("judge_names", ["judge_rm"]), "judges", "proxy_rm", "llm"]
    out: dict = {
        "run": str(run),
        "n_prompts": ev.get("n_prompts"),
        "sft_probe": m.get("probe", {}).get("sft", {}).get("overall"),
        "sft_refusal_hedge_rate": m.get("probe", {}).get("sft", {}).get("refusal_hedge_rate"),
        "sft_mean_words": (ev.get("sft", {}).get("lengths") or {}).get("mean_words"),
        "sft_unfinished_rate": (ev.get("sft", {}).get("lengths") or {}).get("unfinished_rate"),
        # seconds per stage and their sum: the whole seed's time, split
        "timing": timing,
        "total_s": sum(timing.values()),
    }
    # each RM's share of the held-out human pairs ranked like the label: how much a judge's verdict is worth
    out["heldout_accuracy"] = {n: ((m.get(n) or {}).get("heldout") or {}).get("accuracy")
                               for n in ["rm", *ev.get("judge_names", ["judge_rm"])]}  # fmt: skip
    from chatglm_rlhf.evaluate.report.context import run_policies

    out["policies"] = run_policies(m)
    for p in out["policies"]:
        if p not in ev:
            continue
        row = {j: ev[p][j]["win_rate"] for j in judges if isinstance(ev[p].get(j), dict)}
        lengths, probe, trained = ev[p].get("lengths") or {}, m.get("probe", {}).get(p) or {}, m.get(p) or {}
        row["unfinished_rate"] = lengths.get("unfinished_rate")
        row["mean_words"] = lengths.get("mean_words")
        row["probe"] = probe.get("overall")
        row["refusal_hedge_rate"] = probe.get("refusal_hedge_rate")  # benign requests refused or hedged
        row["kl_final"] = trained.get("kl_final")  # online algorithms: the KL to the reference at the end
        series = trained.get("kl_series") or []  # one batch a step: the last step alone is noisy
        row["kl_last5"] = statistics.fmean(series[-5:]) if series else None
        kept = (m.get(f"{p}_curve") or {}).get("kept_step")  # the checkpoint evaluated (chosen on dev)
        if kept and series:  # the KL around it: the mean of the 5 steps up to it
            row["kept_step"] = kept
            row["kl_kept5"] = statistics.fmean(series[max(kept - 5, 0) : kept])
        if (
            trained.get("estimator") and trained.get("steps") and trained.get("seconds")
        ):  # online: s / iteration
            row["s_per_iteration"] = trained["seconds"] / trained["steps"]
        out[p] = row
    out["kept_step"] = (m.get("ppo_curve") or {}).get("kept_step")  # the over-optimisation curve's choice
    return out


def mean_sd(xs: list) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the values given (None where missing; sd 0 for one)."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def main(dirs: list[str]) -> None:
    runs = [one_run(Path(d)) for d in dirs]
    print(
        f"{len(runs)} seeds, {runs[0]['n_prompts']} evaluation prompts: {', '.join(r['run'] for r in runs)}"
    )
    summary: dict = {"runs": runs}
    for p in dict.fromkeys(p for r in runs for p in r["policies"]):
        if not all(p in r for r in runs):
            continue
        keys = [k for k in runs[0][p] if all(k in r[p] for r in runs)]
        summary[p] = {}
        for k in keys:
            vals = [r[p][k] for r in runs]
            mu, sd = mean_sd(vals)
            summary[p][k] = {"mean": mu, "sd": sd, "values": vals}
            shown = ", ".join("-" if v is None else f"{v:.3f}" for v in vals)
            print(f"{p:10} {k:16} " + ("-" if mu is None else f"{mu:.3f} +- {sd:.3f}") + f"  ({shown})")
    for key, label in (
        ("sft_probe", "probe"),
        ("sft_refusal_hedge_rate", "refusal_hedge"),
        ("sft_mean_words", "words"),
        ("sft_unfinished_rate", "unfinished_rate"),
    ):
        mu, sd = mean_sd([r[key] for r in runs])
        print(f"{'sft':10} {label:16} " + ("-" if mu is None else f"{mu:.3f} +- {sd:.3f}"))
    for name in runs[0]["heldout_accuracy"]:
        vals = [r["heldout_accuracy"].get(name) for r in runs]
        mu, sd = mean_sd(vals)
        print(f"{name:10} {'heldout_accuracy':16} " + ("-" if mu is None else f"{mu:.3f} +- {sd:.3f}"))
    print("kept PPO checkpoint (dev): " + ", ".join(str(r["kept_step"]) for r in runs))
    stages = dict.fromkeys(k for r in runs for k in r["timing"])
    print("seconds per stage: " + ", ".join(
        f"{k} " + "/".join(f"{r['timing'].get(k, 0):.0f}" for r in runs) for k in stages))  # fmt: skip
    print("seed total (min): " + ", ".join(f"{r['total_s'] / 60:.1f}" for r in runs))
    (Path(dirs[0]) / "seeds.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
