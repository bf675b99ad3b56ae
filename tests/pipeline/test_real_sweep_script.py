"""scripts/real_sweep.py's table on hand-made run folders (no model: the runs are written by hand)."""

import json


def _run(folder, kl, points):
    folder.mkdir(parents=True)
    curve = [{"step": s, "unfinished_rate": u, "judges_mean": j, "proxy_rm": p} for s, u, j, p in points]
    metrics = {
        "ppo": {"kl_final": kl, "response_len_mean": 30.0, "steps": points[-1][0]},
        "ppo_curve": {"dev_prompts": 72, "points": curve},
        "timing": {"ppo": 600.0},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_table_reads_each_finished_setting_and_skips_the_base_and_unfinished(tmp_path, repo_script, capsys):
    mod = repo_script("scripts/real_sweep.py")
    _run(tmp_path / "lr1e-4_kl0.05", 0.8, [(5, 0.2, 0.55, 0.6), (10, 0.1, 0.62, 0.7)])
    _run(tmp_path / "base", 0.0, [(1, 0.0, 0.5, 0.5)])  # the shared stages: never a setting
    (tmp_path / "lr3e-4_kl0.05").mkdir()  # started, not finished
    rows = mod.table(tmp_path, "ppo")
    assert [r["run"] for r in rows] == ["lr1e-4_kl0.05"]
    assert rows[0]["final_judges_mean"] == 0.62 and rows[0]["final_unfinished"] == 0.1
    assert rows[0]["judges_mean_by_step"] == {5: 0.55, 10: 0.62}
    assert "5:0.550 10:0.620" in capsys.readouterr().out
    assert json.loads((tmp_path / "sweep.json").read_text())[0]["kl_final"] == 0.8


def test_each_setting_gets_its_keys_and_a_critic_free_sweep_leaves_the_llm_judge_out(
    tmp_path, repo_script, monkeypatch
):
    mod = repo_script("scripts/real_sweep.py")
    calls = []

    def fake_cli(out, overrides, *flags, log):
        calls.append((out.name, overrides, flags))
        out.mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(mod, "_cli", fake_cli)
    monkeypatch.setattr(mod, "table", lambda out, algorithm: [])
    args = [
        "real_sweep.py",
        str(tmp_path),
        "--algorithm",
        "pg",
        "--lr",
        "1e-4",
        "--kl",
        "0.3",
        "--tag",
        "rloo",
    ]
    monkeypatch.setattr("sys.argv", args)
    mod.main()
    (base, base_keys, base_flags), (run, keys, flags) = calls
    assert base == "base" and base_flags == ("--until", "judge_rm_2")
    assert "eval.llm_judge_policies=[]" in base_keys  # the LLM judge's default (ppo) is not trained here
    assert run == "lr1e-4_kl0.3_rloo" and flags == ("--until", "pg_curve")
    assert keys[-2:] == ["pg.lr=1e-4", "pg.kl_coef=0.3"]
