"""The embedded demo end to end on a very small profile, and its resumability."""

import json

import pytest

from chatglm_rlhf.cli.main import main
from chatglm_rlhf.evaluate.report.ablations import ablation_rows
from chatglm_rlhf.evaluate.report.context import ReportContext


def table_rows(out, metrics):
    """The report's ablation table, arranged from the stages' metrics as written."""
    return ablation_rows(ReportContext(out, metrics, {}))


TINY = [
    "task.n_sft=120",
    "task.n_eval=8",
    "task.n_pref=8",
    "task.n_rl=8",
    "task.corpus=400",
    "model.hidden_size=32",
    "model.num_layers=1",
    "sft.max_steps=4",
    "sft.batch_size=8",
    "generation.max_new_tokens=8",
    "rm.epochs=1",
    "ppo.steps=1",
    "ppo.rollout_batch_size=8",
    "ppo.mini_batch_size=8",
    "ppo.filter_eps=0",  # an RM trained for a few steps scores all answers alike: keep every prompt
    "ppo.generation.max_new_tokens=8",
    "dpo.k=2",
    "dpo.max_steps=2",
    "dpo.generation.max_new_tokens=8",
    "eval.max_new_tokens=8",
    "progress=false",
]


def test_demo_writes_metrics_and_comparisons_then_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), "--profile", "smoke", *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["sft"]["gold_score"] <= 1.0
    # 8 prompts x 3 responses -> 3 pairs each, 2 annotators per pair in the smoke profile
    assert metrics["data"]["comparisons"] == 8 * 3 * 2
    lines = (out / "data" / "comparisons.jsonl").read_text().splitlines()
    assert len(lines) == metrics["data"]["comparisons"]
    trl = (out / "data" / "comparisons.trl.jsonl").read_text().splitlines()
    assert (
        len(trl)
        == metrics["data"]["trl_written"]
        == metrics["data"]["comparisons"] - metrics["data"]["labels"]["tie"]
    )
    for model in ("sft", "rm", "ppo", "dpo", "rm_nobalance", "ppo_nobalance", "ppo_nobaseline", "ppo_noptx"):
        assert (out / "models" / model / "config.json").exists(), model
    filt = metrics["filter"]
    assert (
        filt["kept_labels"] + sum(filt["dropped"].values()) == filt["read"] == metrics["data"]["comparisons"]
    )
    for policy in ("ppo", "dpo", "ppo_nobaseline", "ppo_noptx", "ppo_nobalance"):
        win = metrics["evaluate"][policy]["gold_win_rate_vs_sft"]
        assert 0.0 <= win <= 1.0 and sum(metrics["evaluate"][policy]["win_tie_loss"]) == 8
    rows = metrics["ceiling"]["rows"]  # smoke profile: 2 SFT samples per prompt -> n = 1 and n = 2
    assert [r["n"] for r in rows] == [1, 2]
    assert rows[1]["gold_pick_score"] >= max(rows[0]["gold_pick_score"], rows[1]["rm_pick_score"])
    html = (out / "report.html").read_text()
    assert (out / "report.html").exists() and table_rows(out, metrics)
    assert html.count("data:image/png;base64,") >= 4 and "ablation" in html.lower()
    captured = capsys.readouterr()
    said = captured.out
    # A short summary, not a dump of metrics.json: a line per policy, then the paths.
    assert "win rate vs SFT" in said and "report " in said and '"filter": {' not in said
    assert len(said.split("win rate vs SFT", 1)[1].splitlines()) < 14
    # smoke says it is a wiring check, in the terminal and on the page
    assert "smoke is a wiring check" in said and "smoke is a wiring check" in html
    # a quiet terminal: no library bars or load reports, no routine read reports, the filter in one line
    noise = (
        "Loading weights",
        "Writing model shards",
        "kept 120, rejected 0",
        "length diff",
        "FutureWarning",
    )
    assert not [n for n in noise if n in captured.out + captured.err], captured.err[-2000:]
    # A second run skips every finished stage and gives the same metrics.
    assert main(["demo", "--out", str(out), "--profile", "smoke", *TINY]) == 0
    assert "already done" in capsys.readouterr().out
    again = json.loads((out / "metrics.json").read_text())
    assert again["data"] == metrics["data"] and again["sft"] == metrics["sft"]


def test_gold_reward_ablation_trains_ppo_on_the_judge(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["demo", "--out", str(out), "--profile", "smoke", *TINY, "ablations=[gold_reward]", "ceiling_n=0"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "models" / "ppo_goldreward" / "config.json").exists()
    assert not (out / "models" / "ppo_noptx").exists() and "ceiling" not in metrics
    # The gold total lies in [0, 1] and PPO sees it times the RM-matched scale: the raw reward PPO
    # logged is the judge's, not an RM's.
    scale = metrics["ppo_goldreward"]["reward_scale"]
    assert scale["scale"] > 0 and scale["n"] > 1
    if "note" not in scale:  # the smoke's SFT model may give the gold judge nothing to spread
        assert scale["reference_std"] == pytest.approx(scale["scale"] * scale["scorer_std"])
    assert all(0.0 <= r / scale["scale"] <= 1.0 for r in metrics["ppo_goldreward"]["reward_series"])
    rows = [r for r in table_rows(out, metrics) if r["name"] == "PPO reward"]
    assert [r["setting"] for r in rows] == ["reward model", "gold judge"]
    assert rows[1]["gold_win_rate"] == metrics["evaluate"]["ppo_goldreward"]["gold_win_rate_vs_sft"]
    capsys.readouterr()
    assert main(["demo", "--out", str(tmp_path / "bad"), "--profile", "smoke", "ablations=[nope]"]) != 0
    assert "gold_reward" in capsys.readouterr().err


def test_the_stress_and_length_head_twins_run_and_fill_their_report_rows(tmp_path):
    """ptx_stress: PPO at lr_scale x the learning rate, with and without ptx; length_heads: an RM with a
    length head on the unbalanced pairs (the filter twin shared with length_balance, made once)."""
    out = tmp_path / "run"
    abl = "ablations=[length_balance,length_heads,ptx_stress]"
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--profile",
                "smoke",
                *TINY,
                abl,
                "ceiling_n=0",
                "ptx_stress.lr_scale=3",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = {
        n: json.loads((out / "models" / n / "ppo_config.json").read_text())
        for n in ("ppo", "ppo_stress", "ppo_stress_noptx")
    }
    assert (
        cfg["ppo_stress"]["lr"] == pytest.approx(3 * cfg["ppo"]["lr"])
        and cfg["ppo_stress"]["ptx_coef"] == cfg["ppo"]["ptx_coef"]
    )
    assert (
        cfg["ppo_stress_noptx"]["ptx_coef"] == 0.0
        and cfg["ppo_stress_noptx"]["lr"] == cfg["ppo_stress"]["lr"]
    )
    assert json.loads((out / "models" / "rm_heads" / "reward_model.json").read_text())["heads"] == 2
    assert sorted(p.name for p in (out / "stages").glob("filter_nobalance*")) == [
        "filter_nobalance.done.json"
    ]
    rows = table_rows(out, metrics)
    assert [r["setting"] for r in rows if r["name"] == "length balancing"] == [
        "on",
        "off",
        "length head (ODIN)",
    ]
    stress = [r for r in rows if r["name"].startswith("ptx loss under stress")]
    assert [r["setting"] for r in stress] == ["on", "off"] and all("probe_overall" in r for r in stress)


def test_two_feedback_rounds_annotate_the_policy_and_continue_it(tmp_path, capsys):
    """rounds=2: round 2 annotates PPO's answers (pairs chosen by an ensemble's uncertainty under the
    budget), filters both rounds' comparisons, retrains the RM and continues PPO from round 1's policy
    with its KL to SFT; every comparison says its round and which model wrote each answer."""
    from chatglm_rlhf.data.formats import load_comparisons

    out = tmp_path / "run"
    args = ["demo", "--out", str(out), "--profile", "smoke", *TINY, "ablations=[]", "ceiling_n=0", "probe=false",
            "algorithms=[ppo]", "rounds=2", "round.select=uncertainty", "round.members=2", "round.budget=12"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rd = metrics["round_2"]
    assert rd["select"] == "uncertainty" and rd["selected_pairs"] == 12 // 2 and rd["comparisons"] == 12
    round1 = load_comparisons(out / "data" / "comparisons.jsonl")[0]
    both = load_comparisons(out / "data" / "comparisons_upto_r2.jsonl")[0]
    assert [c.meta["round"] for c in both] == [1] * len(round1) + [2] * 12
    assert {(c.meta["model_a"], c.meta["model_b"]) for c in both[len(round1) :]} == {("ppo", "ppo")}
    assert metrics["filter_r2"]["read"] == len(round1) + 12
    cfg = json.loads((out / "models" / "ppo_r2" / "ppo_config.json").read_text())
    assert cfg["model"] == str(out / "models" / "ppo") and cfg["reference_model"] == str(
        out / "models" / "sft"
    )
    assert cfg["reward_model"] == str(out / "models" / "rm_r2")
    ev = metrics["evaluate"]["ppo_r2"]
    assert ev["versus"] == "ppo" and 0.0 <= ev["gold_win_rate_vs_versus"] <= 1.0
    assert "round 2: 12 comparisons on ppo's answers (uncertainty)" in capsys.readouterr().out
    html = (out / "report.html").read_text()
    assert "Feedback rounds" in html and "ppo_r2" in html


def test_pessimistic_twin_climbs_the_ensemble_and_both_curves_show_proxy_and_gold(tmp_path, capsys):
    """ablations=[pessimistic]: bootstrap RMs on the main run's filtered pairs, PPO's twin on their
    mean - lam x std (built when the stage runs, put on the RM's scale), and a proxy-vs-gold curve on the
    dev prompts for PPO and the twin; a changed lam redoes the twin and not the members or PPO's curve."""
    out = tmp_path / "run"
    args = ["demo", "--out", str(out), "--profile", "smoke", *TINY, "task.n_dev=8", "ppo.steps=2",
            "ppo.snapshot_every=1", "ablations=[pessimistic]", "algorithms=[ppo]", "ensemble.members=2",
            "ensemble.lam=0.5", "ceiling_n=0", "probe=false", "eval_prompts=dev_prompts"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ppo_pess"]["ensemble"] == {"members": ["ens_0", "ens_1"], "lam": 0.5}
    assert metrics["ppo_pess"]["reward_scale"]["n"] > 1  # measured on the SFT model's candidates
    marker = json.loads((out / "stages" / "ppo_pess.done.json").read_text())["settings"]
    assert marker["ensemble"] == ["ens_0", "ens_1"] and marker["lam"] == 0.5
    seeds = [
        json.loads((out / "stages" / f"ens_{m}.done.json").read_text())["settings"]["bootstrap"]
        for m in (0, 1)
    ]
    assert seeds[0] != seeds[1]
    main_curve, twin = metrics["ppo_gold_curve"], metrics["ppo_pess_gold_curve"]
    for curve in (main_curve, twin):
        assert [p["step"] for p in curve["points"]] == [1, 2] and curve["dev_prompts"] == 8
        assert all(0.0 <= p["gold"] <= 1.0 and 0.0 <= p["proxy_rm"] <= 1.0 for p in curve["points"])
        assert all(p["kl"] is not None and p["gold_score"] is not None for p in curve["points"])
    assert "ensemble_reward" not in main_curve["points"][0] and twin["lam"] == 0.5
    p = twin["points"][-1]
    assert p["ensemble_reward"] == pytest.approx(p["ensemble_mean"] - 0.5 * p["ensemble_std"], abs=1e-5)
    # The last point is the final policy on the same prompts and settings as the evaluation.
    for name, curve in (("ppo", main_curve), ("ppo_pess", twin)):
        assert curve["points"][-1]["gold"] == metrics["evaluate"][name]["gold_win_rate_vs_sft"]
    rows = [r for r in table_rows(out, metrics) if r["name"] == "pessimistic reward"]
    assert [r["setting"] for r in rows] == ["reward model", "ensemble mean - 0.5 x std"]
    assert "Over-optimisation: proxy vs gold" in (out / "report.html").read_text()
    capsys.readouterr()
    assert main([a for a in args if not a.startswith("ensemble.lam")] + ["ensemble.lam=0"]) == 0
    said = capsys.readouterr().out
    assert "[ppo_pess] changed since it ran (lam: 0.5 -> 0" in said, said
    for kept in ("ens_1", "ppo_gold_curve"):
        assert f"[{kept}] already done" in said
    assert json.loads((out / "metrics.json").read_text())["ppo_pess"]["ensemble"]["lam"] == 0


def test_pessimistic_settings_errors_name_the_key(tmp_path, capsys):
    base = ["demo", "--out", str(tmp_path / "bad"), "--profile", "smoke", "ablations=[pessimistic]"]
    assert main([*base, "ensemble.members=1"]) != 0
    assert "ensemble.members: the pessimistic ablation needs >= 2" in capsys.readouterr().err
    assert main([*base, "ensemble.lam=-1"]) != 0
    assert "ensemble.lam" in capsys.readouterr().err
