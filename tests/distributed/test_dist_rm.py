"""Reward-model training in 2 CPU processes (gloo) vs 1 process with the same global batch.

The pairs carry length-balancing weights (0.5, 1, 2) as the filter writes them, so a step's loss must be
normalised by the weight of the whole global batch. Global batch per optimizer step: 2 micro-batches of
2 pairs; one process accumulates both (``grad_accum=2``), two processes take one each (``grad_accum=1``).
Tolerance as for SFT: fp32, the all-reduce only changes the summation order, so max |weight diff| <= 1e-4
after 3 AdamW steps at lr 3e-3 (3% of one step; with the fix named in the xfail reason a debug run gave
3.3e-5, the current code 1.6e-2), losses within 1e-5 relative.
"""

from __future__ import annotations

import pytest
from dist_helpers import in_process, launch, load_state, max_param_diff, read_jsonl

PARAM_ATOL = 1e-4
LOSS_RTOL = 1e-5


def rm_args(world, out, grad_accum: int) -> list[str]:
    args = dict(
        model=world["rm"], data=world["pairs"], output_dir=out, batch_size=2, grad_accum=grad_accum,
        max_steps=3, lr=3e-3, warmup_ratio=0.0, lr_schedule="constant", max_length=64, seed=1, cpu="true",
        progress="false", log_every=1,
    )  # fmt: skip
    return ["rm", "train", *(f"{k}={v}" for k, v in args.items())]


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("rm_runs")
    in_process(rm_args(world, root / "one", grad_accum=2))
    two = launch(2, rm_args(world, root / "two", grad_accum=1), root / "two", root / "audit")
    return {"one": root / "one", "two": root / "two", "launch": two}


@pytest.mark.xfail(
    strict=True,
    reason="reward/trainer.py _train_step divides by the rank's own step_weight; pairs carry length-balancing "
    "weights (meta.weight), so ranks' sums differ. Fix: all-reduce step_weight and scale by num_processes",
)
def test_two_processes_give_the_weights_of_one(runs):
    diff = max_param_diff(load_state(runs["one"]), load_state(runs["two"]))
    assert diff <= PARAM_ATOL, f"2-process weights differ from 1-process by {diff:.3g}"


@pytest.mark.xfail(
    strict=True,
    reason="reward/trainer.py RMTrainer._train_step logs rank 0's own metrics, not reduced over ranks",
)
def test_two_processes_give_the_loss_curve_of_one(runs):
    one = [r["loss"] for r in read_jsonl(runs["one"] / "metrics.jsonl")]
    two = [r["loss"] for r in read_jsonl(runs["two"] / "metrics.jsonl")]
    assert len(one) == len(two) == 3
    assert two == pytest.approx(one, rel=LOSS_RTOL)


def test_only_rank0_writes(runs):
    reports = runs["launch"]["reports"]
    assert reports[1]["world"] == 2
    assert any(w.endswith("rm_result.json") for w in reports[0]["writes"])
    assert reports[1]["writes"] == []
