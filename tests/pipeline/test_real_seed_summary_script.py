"""scripts/real_seed_summary.py on hand-made run folders: every figure read from metrics.json, averaged."""

import json


def _run(folder, kl, win, refusal, words):
    folder.mkdir()
    lengths = {"unfinished_rate": 0.05, "mean_words": words}
    metrics = {
        "run": {"policies": ["ppo"]},
        "evaluate": {
            "n_prompts": 200,
            "judge_names": ["judge_rm"],
            "sft": {"lengths": {"mean_words": 30.0}},
            "ppo": {"judge_rm": {"win_rate": win}, "lengths": lengths},
        },
        "ppo": {
            "kl_final": kl,
            "kl_series": [9.0, kl, kl, kl, kl, kl],
            "estimator": "gae",
            "steps": 20,
            "seconds": 400.0,
        },
        "timing": {"rm": 100.0, "ppo": 500.0},
        "rm": {"heldout": {"n": 240, "accuracy": 0.6}},
        "judge_rm": {"heldout": {"n": 240, "accuracy": win - 0.1}},
        "ppo_curve": {"kept_step": 2},
        "probe": {
            "sft": {"overall": 0.4, "refusal_hedge_rate": 0.0},
            "ppo": {"overall": 0.38, "refusal_hedge_rate": refusal},
        },
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_means_of_kl_refusal_and_length_over_seeds(tmp_path, repo_script, capsys):
    mod = repo_script("scripts/real_seed_summary.py")
    _run(tmp_path / "s0", 0.6, 0.62, 0.025, 20.0)
    _run(tmp_path / "s1", 1.0, 0.66, 0.075, 24.0)
    mod.main([str(tmp_path / "s0"), str(tmp_path / "s1")])
    summary = json.loads((tmp_path / "s0" / "seeds.json").read_text())
    assert abs(summary["ppo"]["kl_final"]["mean"] - 0.8) < 1e-9
    assert abs(summary["ppo"]["refusal_hedge_rate"]["mean"] - 0.05) < 1e-9
    assert summary["ppo"]["mean_words"]["values"] == [20.0, 24.0]
    assert summary["ppo"]["s_per_iteration"]["values"] == [20.0, 20.0]
    assert summary["ppo"]["kl_last5"]["values"] == [0.6, 1.0]  # the first step's 9.0 is not in the last 5
    assert summary["runs"][0]["total_s"] == 600.0
    assert summary["ppo"]["kl_kept5"]["values"] == [(9.0 + 0.6) / 2, (9.0 + 1.0) / 2]  # steps 1-2
    out = capsys.readouterr().out
    assert "sft        words            30.000" in out and "judge_rm         0.640" in out
    assert "judge_rm   heldout_accuracy 0.540 +- 0.028" in out and "rm         heldout_accuracy 0.600" in out
    assert "seconds per stage: rm 100/100, ppo 500/500" in out and "seed total (min): 10.0, 10.0" in out
