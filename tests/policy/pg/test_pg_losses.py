"""The critic-free estimators and loss reductions on hand-computed numbers."""

import math

import pytest
import torch

from chatglm_rlhf.policy.pg import losses as PG

SCORES = torch.tensor([[1.0, 2.0, 3.0, 6.0]])  # one prompt, k = 4: mean 3, unbiased std sqrt(14/3)
STD = math.sqrt(14 / 3)


def test_grpo_divides_the_centred_scores_by_the_group_std():
    adv = PG.sequence_advantages("grpo", SCORES)
    assert adv[0].tolist() == pytest.approx([-2 / STD, -1 / STD, 0.0, 3 / STD], abs=1e-5)


def test_dr_grpo_only_centres():
    assert PG.sequence_advantages("dr_grpo", SCORES)[0].tolist() == [-2.0, -1.0, 0.0, 3.0]


def test_rloo_subtracts_the_mean_of_the_other_samples():
    # 1 - (2+3+6)/3, 2 - (1+3+6)/3, 3 - (1+2+6)/3, 6 - (1+2+3)/3
    expected = [1 - 11 / 3, 2 - 10 / 3, 0.0, 4.0]
    assert PG.sequence_advantages("rloo", SCORES)[0].tolist() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="k >= 2"):
        PG.rloo_advantages(torch.tensor([[1.0]]))


def test_reference_baseline_subtracts_the_sft_answers_score_per_prompt():
    scores = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    adv = PG.sequence_advantages("ref_baseline", scores, torch.tensor([2.5, 1.0]))
    assert adv.tolist() == [[-1.5, -0.5], [-1.0, 3.0]]
    with pytest.raises(ValueError, match="reference"):
        PG.sequence_advantages("ref_baseline", scores)


def test_reinforce_pp_normalises_over_the_whole_batch():
    assert PG.sequence_advantages("reinforce_pp", SCORES).tolist() == SCORES.tolist()  # no group baseline
    norm = PG.batch_normalize(SCORES)
    assert norm[0].tolist() == pytest.approx([-2 / STD, -1 / STD, 0.0, 3 / STD], abs=1e-5)
    # masked: the padding entry (100) neither moves the mean nor comes back non-zero
    x, mask = torch.tensor([[1.0, 3.0, 100.0]]), torch.tensor([[1, 1, 0]])
    assert PG.batch_normalize(x, mask)[0].tolist() == pytest.approx(
        [-1 / math.sqrt(2), 1 / math.sqrt(2), 0.0]
    )


def test_a_flat_group_gets_zero_advantage():
    flat = torch.tensor([[2.0, 2.0, 2.0]])
    for est in ("grpo", "dr_grpo", "rloo"):
        assert PG.sequence_advantages(est, flat).abs().max() == 0.0, est
    with pytest.raises(ValueError, match="estimator"):
        PG.sequence_advantages("ppo", flat)


MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def test_token_advantages_broadcast_without_kl():
    adv = PG.token_advantages(torch.tensor([2.0, -1.0]), MASK)
    assert adv.tolist() == [[2.0, 2.0, 2.0], [-1.0, -1.0, 0.0]]


def test_token_advantages_with_kl_in_the_reward_are_rewards_to_go():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])  # 9 is padding: ignored
    adv = PG.token_advantages(torch.tensor([2.0, -1.0]), MASK, kl, kl_coef=0.5)
    # row 0 rewards [-0.05, -0.1, -0.15 + 2]; row 1 [-0.2, -0.25 - 1]
    assert adv[0].tolist() == pytest.approx([1.7, 1.75, 1.85], abs=1e-6)
    assert adv[1].tolist() == pytest.approx([-1.45, -1.25, 0.0], abs=1e-6)


def test_reward_to_go():
    r = PG.reward_to_go(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1, 1, 0]]))
    assert r.tolist() == [[3.0, 2.0, 0.0]]


def test_clipped_token_loss_takes_the_pessimistic_branch():
    lp = torch.tensor([[0.5, 0.5, -0.5]])
    adv = torch.tensor([[1.0, -1.0, 1.0]])
    per_token, stats = PG.clipped_token_loss(lp, torch.zeros_like(lp), adv, torch.ones_like(lp), 0.2)
    # ratio e^0.5 = 1.6487: A=1 -> clipped -1.2; A=-1 -> unclipped 1.6487; ratio e^-0.5, A=1 -> -0.6065
    assert per_token[0].tolist() == pytest.approx([-1.2, math.exp(0.5), -math.exp(-0.5)], abs=1e-5)
    assert float(stats.clip_frac) == pytest.approx(1 / 3)


def test_k3_kl_is_the_nonnegative_estimate_with_gradient():
    lp = torch.tensor([[0.0, math.log(0.5)]], requires_grad=True)
    ref = torch.tensor([[math.log(0.5), math.log(0.5)]])
    kl = PG.k3_kl(lp, ref, torch.tensor([[1, 1]]))
    # q - p = log 0.5: 0.5 - log 0.5 - 1 = 0.19315; equal log-probs: 0
    assert kl[0].tolist() == pytest.approx([0.5 + math.log(2) - 1, 0.0], abs=1e-6)
    kl.sum().backward()
    assert lp.grad[0, 0] > 0  # pushing log p up (away from q) raises the KL


def test_aggregate_reductions():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])  # 100 is padding
    assert [float(x) for x in PG.aggregate(per_token, MASK, "token_mean")] == [15.0, 5.0]
    assert [float(x) for x in PG.aggregate(per_token, MASK, "seq_mean")] == [2.0 + 4.5, 2.0]
    assert [float(x) for x in PG.aggregate(per_token, MASK, "seq_sum", max_len=4)] == [15 / 4, 2.0]
    with pytest.raises(ValueError, match="aggregation"):
        PG.aggregate(per_token, MASK, "sum")


def test_aggregate_splits_exactly_over_micro_batches():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    for mode in ("token_mean", "seq_mean", "seq_sum"):
        whole = PG.aggregate(per_token, MASK, mode, 3)
        parts = [PG.aggregate(per_token[i : i + 1], MASK[i : i + 1], mode, 3) for i in range(2)]
        assert float(whole[0] / whole[1]) == pytest.approx(
            float(sum(p[0] for p in parts) / sum(p[1] for p in parts))
        ), mode
