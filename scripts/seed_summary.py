"""Means and spreads over seed runs of the demo profile, next to the demo world's targets.

usage: python scripts/seed_summary.py RUN_DIR [RUN_DIR ...]   (writes seeds.json beside the first run)
Every figure is read from the runs' metrics.json and eval/<policy>/responses.jsonl; nothing is tuned here.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def policies_of(metrics: dict) -> list[str]:
    """The run's trained policies in stage order (``run.policies``; older runs: the evaluation's)."""
    from chatglm_rlhf.evaluate.report.context import run_policies

    return run_policies(metrics)


def shares(run: Path, policy: str) -> dict[str, dict]:
    """Per category, the most common answer's share for the policy and for SFT (the collapse check),
    with that answer and its mean gold score where it was given."""
    from chatglm_rlhf.evaluate.health import top_shares

    rows = [json.loads(x) for x in (run / "eval" / policy / "responses.jsonl").read_text().splitlines() if x]
    return top_shares(rows)


def one_run(run: Path) -> dict:
    from chatglm_rlhf.evaluate.health import collapsed as collapsed_
    from chatglm_rlhf.evaluate.health import repeated as repeated_

    m = json.loads((run / "metrics.json").read_text())
    ev, probe = m["evaluate"], m.get("probe", {})
    out: dict = {"run": str(run), "policies": policies_of(m)}
    for p in out["policies"]:
        if p not in ev:
            continue
        evj = json.loads((run / ev[p]["eval"]).read_text())
        cats = {c: v["win_rate"] for c, v in evj["per_category"].items()}
        sh = shares(run, p)
        # Issue 29's rule (evaluate/health.collapsed): repeated *and* worse than SFT there; repeated
        # right answers are listed apart with their share and gold.
        named = {c: f"{c} ({s.get('top')!r}: {s['policy']:.2f}, gold {s.get('top_score', float('nan')):.2f}"
                    f" vs SFT {s.get('sft_score', float('nan')):.2f})" for c, s in sh.items() if c != "harmful"}  # fmt: skip
        collapsed = [named[c] for c, s in sh.items() if c != "harmful" and collapsed_(s)]
        repeated = [named[c] for c, s in sh.items() if c != "harmful" and repeated_(s) and not collapsed_(s)]
        out[p] = {"win_rate": ev[p]["gold_win_rate_vs_sft"], "min_category": min(cats.values()), "per_category": cats,
                  "collapsed_categories": collapsed, "repeated_not_collapse": repeated, "shares": sh, "words": ev[p]["mean_response_length"],
                  "gold": ev[p]["gold_score"], "probe": (probe.get(p) or {}).get("overall")}  # fmt: skip
    out["sft_probe"] = (probe.get("sft") or {}).get("overall")
    first = next((p for p in out["policies"] if p in ev), None)
    out["sft_words"] = ev[first]["sft_mean_response_length"] if first else None
    for rm in ("rm", "rm_nobalance"):
        if rm in m:
            out[rm] = {"length_corr_eval_ties": m[rm]["length_correlation"], "ties": m[rm]["length_probe"]["n"],
                       "filler_corr": (m[rm].get("filler_probe") or {}).get("pearson"),
                       "filler_pairs": (m[rm].get("filler_probe") or {}).get("n"), "gold_accuracy": m[rm]["gold_accuracy"]}  # fmt: skip
    for p in ("ppo", "ppo_nobaseline", "ppo_goldreward"):
        if p in m and p in out:
            out[p]["reward_train_std"] = m[p]["reward_train_std"]
            out[p]["reward_train_within_step_std"] = m[p].get("reward_train_within_step_std")
            out[p]["kl_final"] = m[p].get("kl_final")
            if m[p].get("reward_scale"):
                out[p]["reward_scale"] = m[p]["reward_scale"]
    for p in out["policies"]:  # time per iteration of the online trainers (PPO and the critic-free ones)
        if p in out and isinstance(m.get(p), dict) and m[p].get("steps"):
            out[p]["s_per_iteration"] = m[p]["seconds"] / m[p]["steps"]
    if "ceiling" in m:
        out["ceiling"] = {
            r["n"]: (r["gold_pick_win_rate"], r["rm_pick_win_rate"]) for r in m["ceiling"]["rows"]
        }
    return out


def claims_table(dirs: list[str]) -> str:
    """The report's "paper's claims" rows, judged over every seed by the same rules (evaluate/report/claims)."""
    from chatglm_rlhf.evaluate.report import claims
    from chatglm_rlhf.evaluate.report.context import ReportContext

    figs = [
        claims.figures(ReportContext(Path(d), json.loads((Path(d) / "metrics.json").read_text()), {}))
        for d in dirs
    ]
    return claims.markdown(claims.judge(figs), len(figs))


def mean_sd(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.3f} +- {sd:.3f} ({', '.join(f'{x:.3f}' for x in xs)})"


def main(dirs: list[str]) -> None:
    runs = [one_run(Path(d)) for d in dirs]
    print(f"{len(runs)} seeds: {', '.join(r['run'] for r in runs)}")
    policies = list(dict.fromkeys(p for r in runs for p in r["policies"]))  # every run's, in stage order
    for p in policies:
        if all(p in r for r in runs):
            rows = [r[p] for r in runs]
            print(f"{p:<15} win {mean_sd([x['win_rate'] for x in rows])}; min category "
                  f"{mean_sd([x['min_category'] for x in rows])}; collapsed {[x['collapsed_categories'] for x in rows]}; "
                  f"words {mean_sd([x['words'] for x in rows])}; probe {mean_sd([x['probe'] for x in rows])}")  # fmt: skip
    for p in policies:  # the target's reading: each category's 3-seed mean, and the mean top-answer share
        if all(p in r for r in runs):
            cats = runs[0][p]["per_category"]
            means = {c: statistics.mean(r[p]["per_category"][c] for r in runs) for c in cats}
            top = {c: (statistics.mean(r[p]["shares"][c]["policy"] for r in runs),
                       statistics.mean(r[p]["shares"][c]["sft"] for r in runs)) for c in cats}  # fmt: skip
            print(f"{p:<15} category means " + ", ".join(f"{c} {v:.3f}" for c, v in means.items())
                  + "; top-answer share policy/sft " + ", ".join(f"{c} {a:.2f}/{b:.2f}" for c, (a, b) in top.items()))  # fmt: skip
    print(
        f"sft             probe {mean_sd([r['sft_probe'] for r in runs])}; words {mean_sd([r['sft_words'] for r in runs])}"
    )
    for rm in ("rm", "rm_nobalance"):
        if all(rm in r for r in runs):
            print(f"{rm:<15} length corr (eval gold ties) {mean_sd([r[rm]['length_corr_eval_ties'] for r in runs])}; "
                  f"filler pairs {mean_sd([r[rm]['filler_corr'] for r in runs])}; gold acc {mean_sd([r[rm]['gold_accuracy'] for r in runs])}")  # fmt: skip
    for p in ("ppo", "ppo_nobaseline", "ppo_goldreward"):
        if all(p in r and "reward_train_std" in r[p] for r in runs):
            print(f"{p:<15} reward fed to GAE: std over steps {mean_sd([r[p]['reward_train_std'] for r in runs])}; "
                  f"within a step {mean_sd([r[p]['reward_train_within_step_std'] for r in runs])}; "
                  f"final KL {mean_sd([r[p]['kl_final'] for r in runs])}")  # fmt: skip
        if all(p in r and "reward_scale" in r[p] for r in runs):
            print(f"{p:<15} reward scale (RM std / gold std on SFT candidates) "
                  f"{mean_sd([r[p]['reward_scale']['scale'] for r in runs])}")  # fmt: skip
    timed = [p for p in policies if all(p in r and "s_per_iteration" in r[p] for r in runs)]
    if "ppo" in timed and len(timed) > 1:  # the critic-free comparison: win rate and time vs PPO's
        ppo_win = statistics.mean(r["ppo"]["win_rate"] for r in runs)
        ppo_s = statistics.mean(r["ppo"]["s_per_iteration"] for r in runs)
        for p in timed:
            win = statistics.mean(r[p]["win_rate"] for r in runs)
            sec = statistics.mean(r[p]["s_per_iteration"] for r in runs)
            print(f"{p:<15} gold win {win:.3f} (PPO - 0.05 = {ppo_win - 0.05:.3f}: {'ok' if win >= ppo_win - 0.05 else 'below'}); "
                  f"{sec:.2f} s / iteration = {sec / ppo_s:.2f}x PPO's")  # fmt: skip
    print(claims_table(dirs))
    out = Path(dirs[0]).parent / "seeds.json"
    out.write_text(json.dumps(runs, indent=1))
    print(f"per-seed figures in {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
