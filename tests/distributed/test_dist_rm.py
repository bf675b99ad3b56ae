"""Reward-model training in 2 CPU processes (gloo) vs 1 process with the same global batch.

The pairs carry length-balancing weights (0.5, 1, 2) as the filter writes them, so a step's loss must be
normalised by the weight of the whole global batch. Global batch per optimizer step: 2 micro-batches of
2 pairs; one process accumulates both (``grad_accum=2``), two processes take one each (``grad_accum=1``).
Tolerance as for SFT: fp32, the all-reduce only changes the summation order, so max |weight diff| <= 1e-4
after 3 AdamW steps at lr 3e-3 (3% of one step; when each rank divided by its own step weight the
difference was 1.6e-2), losses within 1e-5 relative.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from dist_helpers import in_process, launch, load_state, max_param_diff, read_jsonl, write_jsonl

PARAM_ATOL = 1e-4
LOSS_RTOL = 1e-5


def rm_args(world, out, grad_accum: int, **over) -> list[str]:
    args = dict(
        model=world["rm"], data=world["pairs"], output_dir=out, batch_size=2, grad_accum=grad_accum,
        max_steps=3, lr=3e-3, warmup_ratio=0.0, lr_schedule="constant", max_length=64, seed=1, cpu="true",
        progress="false", log_every=1,
    )  # fmt: skip
    args.update(over)
    return ["rm", "train", *(f"{k}={v}" for k, v in args.items())]


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("rm_runs")
    in_process(rm_args(world, root / "one", grad_accum=2))
    two = launch(2, rm_args(world, root / "two", grad_accum=1), root / "two", root / "audit")
    return {"one": root / "one", "two": root / "two", "launch": two}


def test_two_processes_give_the_weights_of_one(runs):
    diff = max_param_diff(load_state(runs["one"]), load_state(runs["two"]))
    assert diff <= PARAM_ATOL, f"2-process weights differ from 1-process by {diff:.3g}"


def test_two_processes_give_the_loss_curve_of_one(runs):
    one = [r["train/loss"] for r in read_jsonl(runs["one"] / "metrics.jsonl")]
    two = [r["train/loss"] for r in read_jsonl(runs["two"] / "metrics.jsonl")]
    assert len(one) == len(two) == 3
    assert two == pytest.approx(one, rel=LOSS_RTOL)


def test_only_rank0_writes(runs):
    reports = runs["launch"]["reports"]
    assert reports[1]["world"] == 2
    assert any(w.endswith("rm_result.json") for w in reports[0]["writes"])
    assert reports[1]["writes"] == []


@pytest.fixture(scope="module")
def uneven(world, tmp_path_factory):
    """7 pairs, 1 per micro-batch, 4 micro-batches per step: each epoch's second step holds 3, so rank 0
    runs 2 and rank 1 runs 1 plus a weight-0 pass; 2 epochs (4 steps)."""
    root = tmp_path_factory.mktemp("rm_uneven")
    data = write_jsonl(root / "pairs7.jsonl", read_jsonl(world["pairs"])[:7])
    common = dict(data=data, batch_size=1, max_steps=-1, epochs=2)
    in_process(rm_args(world, root / "one", grad_accum=4, **common))
    launch(2, rm_args(world, root / "two", grad_accum=2, **common), root / "two", root / "audit")
    return root


def test_a_short_last_step_pads_instead_of_repeating_pairs(uneven):
    diff = max_param_diff(load_state(uneven / "one"), load_state(uneven / "two"))
    assert diff <= PARAM_ATOL, f"2-process weights differ from 1-process by {diff:.3g}"
    one = read_jsonl(uneven / "one" / "metrics.jsonl")
    two = read_jsonl(uneven / "two" / "metrics.jsonl")
    assert len(one) == len(two) == 4
    for key in ("train/loss", "train/accuracy"):
        assert [r[key] for r in two] == pytest.approx([r[key] for r in one], rel=LOSS_RTOL)
    result = json.loads((uneven / "two" / "rm_result.json").read_text())
    assert result["pairs"] == 14  # every pair once per epoch, over both ranks


def test_rank_share_pads_a_rank_left_without_micro_batches():
    from chatglm_rlhf.reward.trainer import EncodedPair, RMTrainer

    enc = [EncodedPair([i], [i, i], 1.0, float("nan"), 1.0) for i in range(4)]
    for rank, (n_real, n_pad) in enumerate([(1, 0), (0, 1)]):
        fake = SimpleNamespace(acc=SimpleNamespace(process_index=rank, num_processes=2))
        mine, pad = RMTrainer._rank_share(fake, [[2, 3]], enc)
        assert (len(mine), len(pad)) == (n_real, n_pad)
    assert pad == [[enc[2]]]  # the step's first pair, run with weight 0
