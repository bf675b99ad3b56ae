"""SIGKILL inside each trainer between checkpoints, then the same command with ``resume=true``: the final
weights and every logged step equal an uninterrupted run's (docs/faults.md)."""

from __future__ import annotations

import time

import pytest
from conftest import assert_killed, assert_ok, assert_same_run, raw_rows, run_cli

pytestmark = pytest.mark.faults


def ppo_args(f, out, estimator: str) -> list[str]:
    cmd = "ppo" if estimator == "gae" else "pg"
    return [
        cmd, f"model={f / 'sft'}", f"reward_model={f / 'rm'}", f"prompts={f / 'prompts.jsonl'}",
        f"sft_data={f / 'sft.jsonl'}", f"output_dir={out}", "steps=4", "rollout_batch_size=2",
        "mini_batch_size=2", "generation.max_new_tokens=5", "progress=false", "cpu=true",
        "report_to=none", "prompt_filter=false", *([] if estimator == "gae" else [f"estimator={estimator}", "k=2", "mini_batch_size=4"]),
    ]  # fmt: skip


def dpo_args(f, out) -> list[str]:
    return ["dpo", f"model={f / 'sft'}", f"data={f / 'pairs.jsonl'}", f"output_dir={out}", "max_steps=5",
            "batch_size=2", "lr=1e-3", "max_length=48", "progress=false", "cpu=true", "log_every=1"]  # fmt: skip


def rm_args(f, out) -> list[str]:
    return ["rm", "train", f"model={f / 'sft'}", f"data={f / 'pairs.jsonl'}", f"output_dir={out}",
            "max_steps=5", "batch_size=2", "lr=1e-3", "max_length=48", "progress=false", "cpu=true",
            "log_every=1"]  # fmt: skip


def sft_args(f, out) -> list[str]:
    return ["sft", f"model={f / 'sft'}", f"data={f / 'pairs.jsonl'}", f"output_dir={out}", "max_steps=5",
            "batch_size=2", "lr=1e-3", "max_length=48", "progress=false", "cpu=true", "log_every=1"]  # fmt: skip


TRAINERS = {
    "sft": sft_args,
    "ppo": lambda f, out: ppo_args(f, out, "gae"),
    "grpo": lambda f, out: ppo_args(f, out, "grpo"),
    "dpo": dpo_args,
    "rm": rm_args,
}


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_killed_between_checkpoints_then_resumed_equals_uninterrupted(files, tmp_path, trainer):
    args = TRAINERS[trainer]
    assert_ok(run_cli(args(files, tmp_path / "full")))
    # Checkpoints at steps 2 and 4; killed right after step 3 is logged (step 3's update is lost).
    killed = run_cli(
        [*args(files, tmp_path / "resumed"), "save_every=2"], kill_after="resumed/metrics.jsonl:3"
    )
    assert_killed(killed)
    ckpts = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert ckpts == ["step-2"] and not (tmp_path / "resumed" / "model.safetensors").exists()
    t_resume = time.time()
    assert_ok(run_cli([*args(files, tmp_path / "resumed"), "save_every=2", "resume=true"]))
    assert_same_run(tmp_path / "full", tmp_path / "resumed")
    # It resumed (a fresh start would also match, being deterministic): steps 1-2 are the killed run's
    # rows, kept; step 3 (logged, then lost with the kill) and later steps were trained by the resumed run.
    times = {r["step"]: r["time"] for r in raw_rows(tmp_path / "resumed")}
    assert sorted(times) == list(range(1, len(times) + 1)) and len(times) >= 4
    assert max(times[1], times[2]) < t_resume < min(t for step, t in times.items() if step >= 3)
