"""The ptx_stress ablation over seed runs, on the capability probe's held-out (test) items: per seed the SFT
model's probe, ppo_stress's (with ptx) and ppo_stress_noptx's, their drops from SFT, then means, spreads
(sample std over seeds) and issue 29's target: the drop without ptx >= 2x its seed spread, and the drop with
ptx at most half the drop without.

    python scripts/ptx_stress_seeds.py RUN_DIR [RUN_DIR ...]   (writes ptx_stress_seeds.json beside the first)

Every figure is read from the runs' metrics.json (the probe stage's ``by_split.test``); nothing is tuned
here (the setting is chosen on the dev items: scripts/ptx_stress_sweep.py).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

MODELS = ("sft", "ppo", "ppo_stress", "ppo_stress_noptx")


def one_run(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    probe, ev = m["probe"], m.get("evaluate", {})
    cfg = json.loads((run / "config.json").read_text())
    row: dict = {"run": str(run), "seed": cfg["task"]["seed"], "ptx_stress": cfg.get("ptx_stress")}
    for p in MODELS:
        if p not in probe:
            continue
        s = probe[p]["by_split"]
        row[p] = {"probe_test": s["test"], "probe_dev": s["dev"], "probe_all": probe[p]["overall"]}
        if p != "sft":
            row[p].update(drop_test=probe["sft"]["by_split"]["test"] - s["test"],
                          kl_final=m.get(p, {}).get("kl_final"),
                          sft_heldout_loss=m.get(p, {}).get("sft_heldout_loss"),
                          sft_heldout_loss_before=m.get(p, {}).get("sft_heldout_loss_before"),
                          gold_win_rate=ev.get(p, {}).get("gold_win_rate_vs_sft"),
                          seconds=m.get("timing", {}).get(p))  # fmt: skip
    return row


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    runs = [one_run(Path(a)) for a in argv]
    head = f"{'seed':>4} {'SFT':>6} {'ppo':>6} {'stress':>6} {'noptx':>6} {'drop ptx':>8} {'drop noptx':>10}"
    print("capability probe, held-out (test) items\n" + head)
    for r in runs:
        cells = " ".join(f"{r[p]['probe_test']:6.3f}" if p in r else f"{'-':>6}" for p in MODELS)
        print(f"{r['seed']:>4} {cells} "
              f"{r['ppo_stress']['drop_test']:+8.3f} {r['ppo_stress_noptx']['drop_test']:+10.3f}")  # fmt: skip
    summary: dict = {}
    for key, p in (("drop_ptx", "ppo_stress"), ("drop_noptx", "ppo_stress_noptx")):
        summary[key] = mean_sd([r[p]["drop_test"] for r in runs])
    for p in MODELS:
        summary[f"probe_{p}"] = mean_sd([r[p]["probe_test"] for r in runs if p in r])
    (dn, sn), (dp, _) = summary["drop_noptx"], summary["drop_ptx"]
    summary["target_noptx_drop_ge_2x_spread"] = dn >= 2 * sn and dn > 0
    summary["target_ptx_drop_le_half"] = dn > 0 and dp <= dn / 2
    print(
        f"mean +- sd: drop with ptx {dp:+.3f} +- {summary['drop_ptx'][1]:.3f}; without {dn:+.3f} +- {sn:.3f}"
    )
    print(f"target: drop without ptx >= 2x spread ({dn:.3f} vs {2 * sn:.3f}): "
          f"{'met' if summary['target_noptx_drop_ge_2x_spread'] else 'not met'}; drop with ptx <= half "
          f"({dp:+.3f} vs {dn / 2:.3f}): {'met' if summary['target_ptx_drop_le_half'] else 'not met'}")  # fmt: skip
    out = Path(argv[0]) / "ptx_stress_seeds.json"
    out.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
