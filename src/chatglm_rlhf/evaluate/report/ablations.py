"""The ablation table: each ablation's pair of settings with the numbers that tell them apart.

Arranged from the stages' own metrics (``rm_nobalance``, ``ppo_nobaseline``, ``ppo_noptx``,
``ppo_goldreward``, ``ppo_pess``, every critic-free policy (``pg_<estimator>``) next to ``rm`` / the algorithms and their
evaluations); a run folder whose
metrics.json already holds an ``ablations`` row list (written before the stage library) shows that list.
A win-rate column is named after its judge: ``gold_win_rate`` or ``judge_rm_win_rate``.
"""

from __future__ import annotations

from typing import Any

from chatglm_rlhf.evaluate.report.context import ReportContext
from chatglm_rlhf.evaluate.report.html import not_run, section, table


def _wins(c: ReportContext, name: str) -> dict[str, Any]:
    pol = c.policy(name)
    if "judge_rm" in pol:
        return {"judge_rm_win_rate": (pol.get("judge_rm") or {}).get("win_rate")}
    return {"gold_win_rate": pol.get("gold_win_rate_vs_sft")}


def _probe(c: ReportContext, name: str) -> dict[str, Any]:
    overall = c.get(f"probe.{name}.overall")
    if overall is None:
        return {}
    return {"probe_overall": overall, "probe_dev": c.get(f"probe.{name}.by_split.dev")}


def ablation_rows(c: ReportContext) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    # none / buckets (the paper's, the main run) / ODIN's length head: whichever twins the run has
    twins = [t for t in (("off", "rm_nobalance", "ppo_nobalance"), ("length head (ODIN)", "rm_heads", "ppo_heads"))
             if c.get(t[1]) is not None]  # fmt: skip
    if twins:
        for setting, rm, ppo in (("on", "rm", "ppo"), *twins):
            rows.append({"name": "length balancing", "setting": setting,
                         "rm_length_correlation": c.get(f"{rm}.length_correlation"),
                         "rm_gold_accuracy": c.get(f"{rm}.gold_accuracy"),
                         "ppo_response_length": c.policy(ppo).get("mean_response_length"), **_wins(c, ppo)})  # fmt: skip
    if c.get("ppo_nobaseline") is not None:
        for setting, ppo in (("on", "ppo"), ("off", "ppo_nobaseline")):
            # The reward fed to GAE is r - r_ref with the baseline and the raw r without it: one scale,
            # so its spread over steps (of the step means) and within a step compare.
            rows.append({"name": "reference baseline", "setting": setting,
                         "fed_reward_std_over_steps": c.get(f"{ppo}.reward_train_std"),
                         "fed_reward_std_within_step": c.get(f"{ppo}.reward_train_within_step_std"),
                         "reward_std": c.get(f"{ppo}.reward_std"), **_wins(c, ppo)})  # fmt: skip
    if c.get("ppo_noptx") is not None:
        for setting, ppo in (("on", "ppo"), ("off", "ppo_noptx")):
            rows.append({"name": "ptx loss", "setting": setting,
                         "sft_heldout_loss": c.get(f"{ppo}.sft_heldout_loss"), **_wins(c, ppo), **_probe(c, ppo)})  # fmt: skip
    if c.get("ppo_stress") is not None:  # a declared stress test (pushed harder), not the paper's setting
        for setting, ppo in (("on", "ppo_stress"), ("off", "ppo_stress_noptx")):
            rows.append({"name": "ptx loss under stress (declared stress test)", "setting": setting,
                         "sft_heldout_loss": c.get(f"{ppo}.sft_heldout_loss"), **_wins(c, ppo), **_probe(c, ppo)})  # fmt: skip
    if c.get("ppo_goldreward") is not None:
        for setting, ppo in (("reward model", "ppo"), ("gold judge", "ppo_goldreward")):
            rows.append({"name": "PPO reward", "setting": setting, **_wins(c, ppo),
                         "top_response_share": c.policy(ppo).get("top_response_share"),
                         "reward_scale": c.get(f"{ppo}.reward_scale.scale")})  # fmt: skip
    if c.get("ppo_pess") is not None:  # PPO on an ensemble's mean - lam x std, on the RM's scale
        lam = c.get("ppo_pess.ensemble.lam")
        for setting, ppo in (("reward model", "ppo"), (f"ensemble mean - {lam} x std", "ppo_pess")):
            rows.append({"name": "pessimistic reward", "setting": setting, **_wins(c, ppo),
                         "reward_scale": c.get(f"{ppo}.reward_scale.scale"), "kl_final": c.get(f"{ppo}.kl_final"),
                         "dev_gold_drop_from_peak": c.get(f"{ppo}_gold_curve.gold_drop.drop_from_peak")})  # fmt: skip
    rows += critic_free_rows(c)
    for name in c.algorithms():
        pol = c.get(f"evaluate.{name}")
        if not isinstance(pol, dict):
            continue
        row = {"name": "algorithms", "setting": name, **_wins(c, name)}
        if "judge_rm" in pol:
            row["proxy_rm_win_rate"] = (pol.get("proxy_rm") or {}).get("win_rate")
            row.update(_probe(c, name))
        else:
            row.update(mean_response_length=pol.get("mean_response_length"),
                       top_response_share=pol.get("top_response_share"))  # fmt: skip
        rows.append(row)
    return rows


def critic_free_rows(c: ReportContext) -> list[dict[str, Any]]:
    """PPO (with its critic) next to each critic-free run (``algorithms=[pg]`` and the ``critic_free``
    ablation's ``pg_<estimator>``): the win rate, seconds per iteration and the optimised reward's spread."""

    # Every policy whose training summary names a critic-free estimator (``pg``, the ``pg_<estimator>``
    # twins, a plug-in's): a new estimator or algorithm needs no change here.
    def estimator(name: str) -> str | None:
        train = c.get(name)
        return train.get("estimator") if isinstance(train, dict) else None

    trained = [n for n in c.policies() if estimator(n) not in (None, "gae")]
    if not trained:
        return []
    rows = []
    for name in ("ppo", *trained):
        pol = c.policy(name)
        steps, seconds = pol.get("steps"), pol.get("seconds")
        per_iter = (
            seconds / steps if isinstance(steps, int) and steps and isinstance(seconds, float) else None
        )
        setting = "PPO (critic)" if name == "ppo" else f"{name}: {pol.get('estimator', name)}"
        rows.append({"name": "critic-free", "setting": setting, **_wins(c, name), "seconds_per_iteration": per_iter,
                     "reward_std": pol.get("reward_std")})  # fmt: skip
    return rows


def section_(c: ReportContext) -> str:
    """The ablation rows ``[{name, setting, <metric>: value}]`` as one table, a column per metric."""
    rows = c.get("ablations")
    if rows is None:
        rows = ablation_rows(c)
    if not rows:
        return not_run("Ablations", "ablations")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("ablations must be a list of {name, setting, <metric>: value} rows")
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in ("name", "setting") and k not in cols]
    head = ["ablation", "setting", *[k.replace("_", " ") for k in cols]]
    body_rows = [[r.get("name"), r.get("setting"), *[r.get(k) for k in cols]] for r in rows]
    intro = "Each row changes one setting of the recipe (the paper's ablations), and PPO vs DPO."
    return section("Ablations", intro, table(head, body_rows, group_first=True))
