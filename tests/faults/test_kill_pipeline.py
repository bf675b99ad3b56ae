"""SIGKILL inside the pipeline's PPO stage, then the same command again: finished stages are kept, PPO
resumes from its last checkpoint (``stages/ppo.started.json`` says it was interrupted with the same
settings), and every metric equals an uninterrupted run's."""

from __future__ import annotations

import json
import time

import pytest
from conftest import assert_killed, assert_ok, raw_rows, run_cli

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SMOKE = ["demo", "--profile", "smoke", "ppo.save_every=1", "algorithms=[ppo]", "ablations=[]"]


def test_pipeline_killed_inside_ppo_resumes_it_and_matches_an_uninterrupted_run(tmp_path, repo_script):
    compare = repo_script("scripts/compare_runs.py")
    full, run = tmp_path / "full", tmp_path / "run"
    assert_ok(run_cli([*SMOKE, "--out", str(full)], timeout=600))
    assert_killed(
        run_cli([*SMOKE, "--out", str(run)], kill_after="run/models/ppo/metrics.jsonl:3", timeout=600)
    )
    assert (run / "stages" / "ppo.started.json").exists() and not (run / "stages" / "ppo.done.json").exists()
    before = {p.name: p.stat().st_mtime for p in (run / "stages").glob("*.done.json")}
    t_rerun = time.time()
    again = run_cli([*SMOKE, "--out", str(run)], timeout=600)
    assert_ok(again)
    assert "[ppo] it was interrupted: resuming" in again.stdout
    assert all((run / "stages" / n).stat().st_mtime == t for n, t in before.items())  # not redone
    times = {r["step"]: r["time"] for r in raw_rows(run / "models" / "ppo")}
    assert sorted(times) == [1, 2, 3, 4]  # no step twice
    assert times[2] < t_rerun < times[3]  # steps 1-2 from the checkpoint, 3-4 trained after the rerun
    old, new = (json.loads((d / "metrics.json").read_text()) for d in (full, run))
    n_shared, n_diff, only_old, only_new = compare.compare(old, new, 0.0, "metrics.json ")
    assert n_shared > 100 and n_diff == 0 and only_old == only_new == []
    steps_full, steps_run = (raw_rows(d / "models" / "ppo") for d in (full, run))
    n_shared, n_diff, _, _ = compare.compare({"s": steps_full}, {"s": steps_run}, 0.0, "ppo steps ")
    assert n_shared > 40 and n_diff == 0
