"""The critic-free trainer in 2 CPU processes (gloo) makes the update of 1 process.

Both runs roll out the same responses (greedy), update once per iteration on the whole batch and mix
in ptx: the ranks' updates (DDP-averaged, the loss's denominator and REINFORCE++'s batch
normalisation taken over both ranks, ptx split between them) must add up to the 1-process update.
"""

from __future__ import annotations

import pytest
from dist_helpers import in_process, launch, load_state, max_param_diff, read_jsonl

STEPS, PROMPTS, K = 2, 4, 2


def pg_args(world, out, **overrides) -> list[str]:
    args = {
        "model": world["policy"], "reward_model": world["rm"], "prompts": world["prompts"], "output_dir": out,
        "steps": STEPS, "rollout_batch_size": PROMPTS, "k": K, "mini_batch_size": PROMPTS * K, "update_epochs": 1,
        "forward_batch_size": 4, "generation.max_new_tokens": 6, "generation.batch_size": 16,
        "generation.greedy": "true", "prompt_filter": "false", "ptx_coef": 0.1, "sft_data": world["sft"],
        "ptx_batch_size": 2, "kl_coef": 0.1, "lr": 1e-3, "seed": 3, "cpu": "true", "progress": "false",
    }  # fmt: skip
    args.update(overrides)
    return ["pg", *(f"{k}={v}" for k, v in args.items())]


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("pg_same")
    # reinforce_pp with the KL in the reward: the whitening over all ranks' tokens is what can differ
    kw = {"estimator": "reinforce_pp", "kl_mode": "reward"}
    in_process(pg_args(world, root / "one", **kw))
    result = launch(2, pg_args(world, root / "two", **kw), root / "two", root / "audit")
    return root, result


def test_two_processes_make_the_update_of_one(runs):
    root, result = runs
    assert [result["reports"][r]["exit"] for r in (0, 1)] == [0, 0] and result["reports"][1]["world"] == 2
    assert result["reports"][0]["checksums"] == pytest.approx(result["reports"][1]["checksums"], rel=1e-9)
    diff = max_param_diff(load_state(root / "one"), load_state(root / "two"))
    assert diff <= 1e-4, f"2-process actor differs from 1-process by {diff:.3g}"
    one, two = (read_jsonl(root / d / "metrics.jsonl") for d in ("one", "two"))
    assert len(one) == len(two) == STEPS
    for a, b in zip(one, two):
        for key in ("reward/raw", "kl", "loss/policy", "loss/ptx", "response_len"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    rank1 = [w for w in result["reports"][1]["writes"] if "random_states_1" not in w]
    assert rank1 == []  # only rank 0 writes


def test_a_critic_free_estimator_is_sharded_by_fsdp_and_makes_the_update_of_one(world, tmp_path_factory):
    """The same FSDP2 path as PPO's (the online loop is one): the actor sharded per block, whole weights
    for generation, and 2 processes = 1 for GRPO with its KL loss term."""
    from test_dist_ppo_fsdp import _assert_sharded

    root = tmp_path_factory.mktemp("pg_fsdp")
    kw = {"estimator": "grpo", "snapshot_every": 1}
    in_process(pg_args(world, root / "one", **kw))
    result = launch(2, pg_args(world, root / "two", fsdp="true", **kw), root / "two", root / "audit")
    _assert_sharded(result["reports"], n_modules=1)  # the actor (the reference is frozen, not trained)
    diff = max_param_diff(load_state(root / "one"), load_state(root / "two"))
    assert diff <= 1e-4, f"2-process FSDP actor differs from 1-process by {diff:.3g}"
    one, two = (read_jsonl(root / d / "metrics.jsonl") for d in ("one", "two"))
    for a, b in zip(one, two):
        for key in ("reward/raw", "kl", "loss/policy", "loss/kl", "loss/ptx"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    assert (root / "two" / "snapshots" / "step_1" / "config.json").exists()  # snapshots for every estimator
