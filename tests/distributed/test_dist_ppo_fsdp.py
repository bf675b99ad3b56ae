"""PPO under FSDP2 (``fsdp=true``) in 2 CPU processes (gloo): really sharded, and the update of 1 process.

accelerate 1.15 with ``cpu=True`` turns an FSDP plugin into DDP without a word, so a "2 processes
equal 1" test alone would pass without sharding anything. The worker therefore records, as the first
step starts, how the trained modules are held (``FSDPModule``, DTensor parameters, this rank's share of the
elements), and whether every ``generate`` call saw whole weights (``utils.fsdp.full_params``).
"""

from __future__ import annotations

import shutil

import pytest
from dist_helpers import in_process, launch, load_state, max_param_diff, read_jsonl
from test_dist_ppo import ROLLOUT, STEPS, ppo_args

# Greedy rollouts, one minibatch per step, ptx and adaptive KL on (as test_dist_ppo's DDP comparison).
SAME = dict(
    prompt_filter="false", mini_batch_size=ROLLOUT, save_every=0, ptx_coef=0.1, ptx_batch_size=2,
    adaptive_kl="true", kl_target=0.01, kl_horizon=10, **{"generation.greedy": "true"},
)  # fmt: skip


@pytest.fixture(scope="module")
def fsdp_vs_one(world, tmp_path_factory):
    """The 1-process run (plain modules) and the 2-process FSDP2 run of the same config."""
    root = tmp_path_factory.mktemp("ppo_fsdp")
    kw = dict(SAME, sft_data=world["sft"])
    in_process(ppo_args(world, root / "one", **kw))
    result = launch(2, ppo_args(world, root / "two", fsdp="true", **kw), root / "two", root / "audit")
    return {"root": root, "policy": world["policy"], **result}


def _assert_sharded(reports: dict, n_modules: int) -> None:
    for rank in (0, 1):
        mods = reports[rank]["sharding"]
        assert len(mods) == n_modules, mods
        for m in mods:
            assert m["fsdp_module"] and not m["ddp"], m
            assert m["fsdp_units"] >= 3, m  # a unit per decoder layer (2) + the root
            assert m["dtensor_params"] == m["params"] > 0, m  # every parameter is a DTensor shard
            assert 0.4 < m["local_fraction"] < 0.6, m  # this rank holds about half of the elements
    calls = [c for r in (0, 1) for c in reports[r]["generate_calls"]]
    assert calls and all(c["whole"] for c in calls), "generate ran on sharded weights"
    assert not any(c["synced"] for c in calls), "generate would decode in lockstep (synced_gpus)"


def test_fsdp_shards_actor_and_critic(fsdp_vs_one):
    _assert_sharded(fsdp_vs_one["reports"], n_modules=2)  # actor, critic


def test_fsdp_two_processes_make_the_update_of_one(fsdp_vs_one):
    root = fsdp_vs_one["root"]
    diff = max_param_diff(load_state(root / "one"), load_state(root / "two"))
    print(f"FSDP2 2-process vs 1-process: max |actor weight difference| = {diff:.3g}")
    assert diff <= 1e-4, f"2-process FSDP actor differs from 1-process by {diff:.3g}"
    moved = max_param_diff(load_state(root / "one"), load_state(fsdp_vs_one["policy"]))
    assert moved > 100 * diff, f"the updates moved the actor by {moved:.3g} only"
    one, two = (read_jsonl(root / d / "metrics.jsonl") for d in ("one", "two"))
    assert len(one) == len(two) == STEPS
    for a, b in zip(one, two):
        for key in ("reward/raw", "reward/train", "kl", "kl_coef", "value/mean", "loss/value", "loss/ptx"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)


def test_fsdp_output_loads_with_from_pretrained(fsdp_vs_one):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(fsdp_vs_one["root"] / "two")
    assert not any(type(p).__name__ == "DTensor" for p in model.parameters())


def test_fsdp_shared_backbone_filter_checkpoint_and_resume(world, tmp_path_factory):
    """Shared backbone (LM and value head as their own units), the prompt filter and the baseline
    under FSDP2, a DCP checkpoint per step; resuming from step 1 remakes the run's step 2 exactly."""
    root = tmp_path_factory.mktemp("ppo_fsdp_resume")
    out = root / "run"
    args = ppo_args(world, out, fsdp="true", shared_backbone="true", save_every=1, micro_batch_size=1)
    first = launch(2, args, out, root / "audit1")
    _assert_sharded(first["reports"], n_modules=1)
    assert (out / "checkpoints" / "step-1" / "fsdp" / ".metadata").exists()
    uninterrupted = load_state(out)
    shutil.copy(out / "metrics.jsonl", root / "metrics_first.jsonl")
    launch(2, [*args, "resume=true"], out, root / "audit2")
    assert max_param_diff(uninterrupted, load_state(out)) <= 1e-6
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    first_rows = read_jsonl(root / "metrics_first.jsonl")
    assert rows[1]["reward/raw"] == pytest.approx(first_rows[1]["reward/raw"], abs=1e-6)


def test_fsdp_lora_equals_one_process(world, tmp_path_factory):
    """A LoRA actor and critic under FSDP2 (frozen base and trainable factors in the same units; the
    reference is the actor with its adapters off): the merged, saved actor equals 1 process's."""
    root = tmp_path_factory.mktemp("ppo_fsdp_lora")
    kw = dict(SAME, ptx_coef=0.0, lora_r=4, lr=1e-2)
    in_process(ppo_args(world, root / "one", **kw))
    two = launch(2, ppo_args(world, root / "two", fsdp="true", **kw), root / "two", root / "audit")
    _assert_sharded(two["reports"], n_modules=2)  # actor, critic: frozen base and factors alike
    diff = max_param_diff(load_state(root / "one"), load_state(root / "two"))
    print(f"FSDP2 LoRA 2-process vs 1-process: max |merged actor weight difference| = {diff:.3g}")
    assert diff <= 1e-4, f"2-process FSDP LoRA actor differs from 1-process by {diff:.3g}"
    assert max_param_diff(load_state(root / "one"), load_state(world["policy"])) > 100 * diff


def test_fsdp_in_one_process_runs_unsharded(world, tmp_path, capsys):
    in_process(ppo_args(world, tmp_path / "one", fsdp="true", steps=1, prompt_filter="false", save_every=0))
    assert "fsdp=true in one process" in capsys.readouterr().out
    assert (tmp_path / "one" / "model.safetensors").exists()
