"""PPO in 2 CPU processes (gloo): it runs, only rank 0 writes, and the work is shared, not repeated.

The issue asks that each rank roll out its share of each rollout batch, and that the reference
baseline cache and the prompt filter be computed once for all ranks. The worker records every
``HFGenerator.generate`` call per rank (the filter samples ``filter_k=2`` per prompt, the baseline is
greedy, rollouts sample one), so the tests can count who generated what.
"""

from __future__ import annotations

import pytest
from dist_helpers import in_process, launch, load_state, max_param_diff, read_jsonl

STEPS, ROLLOUT, N_PROMPTS = 2, 4, 32
USED = STEPS * ROLLOUT  # the prompts a run draws: the filter (eps 0 keeps all) and baseline sample only these


def ppo_args(world, out, **overrides) -> list[str]:
    args = {
        "model": world["policy"], "reward_model": world["rm"], "prompts": world["prompts"],
        "output_dir": out, "steps": STEPS, "rollout_batch_size": ROLLOUT, "mini_batch_size": 2,
        "update_epochs": 1, "forward_batch_size": 4, "generation.max_new_tokens": 6,
        "generation.batch_size": 16, "prompt_filter": "true", "filter_k": 2, "filter_eps": 0.0,
        "reward_baseline": "true", "baseline_greedy": "true", "ptx_coef": 0.0, "lr": 1e-3,
        "critic_lr": 1e-3, "seed": 3, "cpu": "true", "progress": "false", "save_every": 1,
    }  # fmt: skip
    args.update(overrides)
    return ["ppo", *(f"{k}={v}" for k, v in args.items())]


@pytest.fixture(scope="module")
def run(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo_runs")
    result = launch(2, ppo_args(world, root / "two"), root / "two", root / "audit")
    return {"out": root / "two", **result}


def _prompts(calls, kind: str) -> int:
    pick = {
        "filter": lambda c: c["num_return"] == 2,
        "baseline": lambda c: c["num_return"] == 1 and c["greedy"],
        "rollout": lambda c: c["num_return"] == 1 and not c["greedy"],
    }[kind]
    return sum(c["prompts"] for c in calls if pick(c))


def test_ppo_runs_two_steps_in_two_processes(run):
    reports = run["reports"]
    assert [reports[r]["exit"] for r in (0, 1)] == [0, 0] and reports[1]["world"] == 2
    assert [r["step"] for r in read_jsonl(run["out"] / "metrics.jsonl")] == [1, 2]
    assert (run["out"] / "model.safetensors").exists() and (run["out"] / "ppo_result.json").exists()
    # the replicas end identical on both ranks (actor and critic)
    assert reports[0]["checksums"] == pytest.approx(reports[1]["checksums"], rel=1e-9)


def test_only_rank0_writes(run):
    assert any(w.endswith("reference_baseline.jsonl") for w in run["reports"][0]["writes"])
    rank1 = [w for w in run["reports"][1]["writes"] if "random_states_1" not in w]
    assert rank1 == []
    keys = [r["key"] for r in read_jsonl(run["out"] / "reference_baseline.jsonl")]
    assert len(keys) == len(set(keys)) == USED < N_PROMPTS


def test_each_rank_rolls_out_its_share(run):
    per_rank = [_prompts(run["reports"][r]["generate_calls"], "rollout") for r in (0, 1)]
    assert per_rank == [STEPS * ROLLOUT // 2] * 2


def test_baseline_and_filter_are_computed_once_for_all_ranks(run):
    calls = [run["reports"][r]["generate_calls"] for r in (0, 1)]
    assert sum(_prompts(c, "filter") for c in calls) == USED
    assert sum(_prompts(c, "baseline") for c in calls) == USED


@pytest.fixture(scope="module")
def same_rollouts(world, tmp_path_factory):
    """1 vs 2 processes where both roll out the same responses (greedy) and update once per step on the
    whole rollout batch: the ranks' updates (DDP-synchronised, token-weighted, whitened over all ranks,
    ptx split between them) must add up to the 1-process update."""
    root = tmp_path_factory.mktemp("ppo_same")
    kw = dict(
        prompt_filter="false", mini_batch_size=ROLLOUT, save_every=0, ptx_coef=0.1, sft_data=world["sft"],
        ptx_batch_size=2, adaptive_kl="true", kl_target=0.01, kl_horizon=10, **{"generation.greedy": "true"},
    )  # fmt: skip
    in_process(ppo_args(world, root / "one", **kw))
    launch(2, ppo_args(world, root / "two", **kw), root / "two", root / "audit")
    return root


def test_two_processes_make_the_update_of_one(same_rollouts):
    diff = max_param_diff(load_state(same_rollouts / "one"), load_state(same_rollouts / "two"))
    assert diff <= 1e-4, f"2-process actor differs from 1-process by {diff:.3g}"
    one, two = (read_jsonl(same_rollouts / d / "metrics.jsonl") for d in ("one", "two"))
    assert len(one) == len(two) == STEPS
    for a, b in zip(one, two):
        for key in ("reward/raw", "reward/train", "kl", "kl_coef", "value/mean", "loss/value", "loss/ptx"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
