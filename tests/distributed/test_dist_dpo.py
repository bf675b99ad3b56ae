"""DPO in 2 CPU processes (gloo) vs 1 process with the same global batch (4 pairs per optimizer step).

Reference log-probs are cached before training (the default): every rank needs them for its pairs, and
only rank 0 writes the cache file. Tolerance as for SFT: max |weight diff| <= 1e-4 after 3 AdamW steps
at lr 3e-3, losses within 1e-5 relative (fp32; only the all-reduce summation order differs).
"""

from __future__ import annotations

import pytest
from dist_helpers import in_process, launch, load_state, max_param_diff, read_jsonl, write_jsonl

PARAM_ATOL = 1e-4
LOSS_RTOL = 1e-5


def dpo_args(world, out, batch_size: int, **overrides) -> list[str]:
    args = dict(
        model=world["policy"], data=world["pairs"], output_dir=out, batch_size=batch_size, grad_accum=1,
        max_steps=3, lr=3e-3, warmup_ratio=0.0, lr_schedule="constant", max_length=64, seed=1, cpu="true",
        progress="false", log_every=1, beta=0.1,
    )  # fmt: skip
    args.update(overrides)
    return ["dpo", *(f"{k}={v}" for k, v in args.items())]


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo_runs")
    in_process(dpo_args(world, root / "one", batch_size=4))
    two = launch(2, dpo_args(world, root / "two", batch_size=2), root / "two", root / "audit")
    return {"one": root / "one", "two": root / "two", "launch": two}


def test_two_processes_give_the_weights_of_one(runs):
    diff = max_param_diff(load_state(runs["one"]), load_state(runs["two"]))
    assert diff <= PARAM_ATOL, f"2-process weights differ from 1-process by {diff:.3g}"


def test_two_processes_give_the_loss_curve_of_one(runs):
    one = [r["train/loss"] for r in read_jsonl(runs["one"] / "metrics.jsonl")]
    two = [r["train/loss"] for r in read_jsonl(runs["two"] / "metrics.jsonl")]
    assert len(one) == len(two) == 3
    assert two == pytest.approx(one, rel=LOSS_RTOL)


def test_only_rank0_writes_and_both_share_the_reference_cache(runs):
    reports = runs["launch"]["reports"]
    assert reports[1]["world"] == 2
    assert any("ref_logps_train" in w for w in reports[0]["writes"])
    assert reports[1]["writes"] == []


@pytest.fixture(scope="module")
def uneven(world, tmp_path_factory):
    """29 pairs, 4 per step: one step has a single pair (fewer than the ranks), and each rank accumulates
    2 micro-batches per step (grad_accum=2) where the 1-process run takes one batch of 4."""
    root = tmp_path_factory.mktemp("dpo_uneven")
    data = write_jsonl(root / "pairs29.jsonl", read_jsonl(world["pairs"])[:29])
    in_process(dpo_args(world, root / "one", batch_size=4, data=data, max_steps=8))
    two = dpo_args(world, root / "two", batch_size=1, grad_accum=2, data=data, max_steps=8)
    launch(2, two, root / "two", root / "audit")
    return root


def test_a_step_with_fewer_pairs_than_ranks_and_grad_accum_match_one_process(uneven):
    diff = max_param_diff(load_state(uneven / "one"), load_state(uneven / "two"))
    assert diff <= PARAM_ATOL, f"2-process weights differ from 1-process by {diff:.3g}"
    one = [r["train/loss"] for r in read_jsonl(uneven / "one" / "metrics.jsonl")]
    two = [r["train/loss"] for r in read_jsonl(uneven / "two" / "metrics.jsonl")]
    assert len(one) == len(two) == 8
    assert two == pytest.approx(one, rel=LOSS_RTOL)
