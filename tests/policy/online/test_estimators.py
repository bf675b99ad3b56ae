"""Every advantage estimator on hand-computed numbers, and the registry that the loop reads."""

import math

import pytest
import torch

from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.policy.online import estimators as E

SCORES = torch.tensor([[1.0, 2.0, 3.0, 6.0]])  # one prompt, k = 4: mean 3, unbiased std sqrt(14/3)
STD = math.sqrt(14 / 3)
ONE = torch.ones(4, 1)  # one token per response: the token advantage is the response's


def run(name, scores, mask=None, **kw):
    mask = ONE if mask is None else mask
    adv, ret = E.get_estimator(name).fn(E.AdvantageInputs(scores=scores, mask=mask, **kw))
    return adv, ret


def test_grpo_divides_the_centred_scores_by_the_group_std():
    adv, ret = run("grpo", SCORES)
    assert adv[:, 0].tolist() == pytest.approx([-2 / STD, -1 / STD, 0.0, 3 / STD], abs=1e-5)
    assert ret is None  # no critic to train


def test_dr_grpo_only_centres():
    assert run("dr_grpo", SCORES)[0][:, 0].tolist() == [-2.0, -1.0, 0.0, 3.0]


def test_rloo_subtracts_the_mean_of_the_other_samples():
    # 1 - (2+3+6)/3, 2 - (1+3+6)/3, 3 - (1+2+6)/3, 6 - (1+2+3)/3
    expected = [1 - 11 / 3, 2 - 10 / 3, 0.0, 4.0]
    assert run("rloo", SCORES)[0][:, 0].tolist() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="k >= 2"):
        E.rloo_advantages(torch.tensor([[1.0]]))


def test_reinforce_pp_and_ref_baseline_pass_the_reward_through():
    # reinforce_pp: no baseline here (the loop normalises over the batch); ref_baseline: the loop has
    # already subtracted r(x, y_ref) from the reward.
    for name in ("reinforce_pp", "ref_baseline"):
        assert run(name, SCORES)[0][:, 0].tolist() == SCORES[0].tolist(), name
    assert E.get_estimator("reinforce_pp").whiten and E.get_estimator("ref_baseline").reference_baseline


def test_remax_subtracts_the_greedy_answers_reward_per_prompt():
    scores = torch.tensor([[1.0, 2.0], [0.0, 4.0]])  # two prompts, k = 2
    adv, _ = run("remax", scores, mask=torch.ones(4, 1), greedy_scores=torch.tensor([2.5, 1.0]))
    # prompt 0: 1 - 2.5, 2 - 2.5; prompt 1: 0 - 1, 4 - 1
    assert adv[:, 0].tolist() == [-1.5, -0.5, -1.0, 3.0]
    with pytest.raises(ValueError, match="greedy"):
        run("remax", scores, mask=torch.ones(4, 1))
    assert E.get_estimator("remax").greedy_baseline and not E.get_estimator("remax").critic


def test_a_flat_group_gets_zero_advantage():
    flat = torch.tensor([[2.0, 2.0, 2.0]])
    for est in ("grpo", "dr_grpo", "rloo"):
        assert run(est, flat, mask=torch.ones(3, 1))[0].abs().max() == 0.0, est


def test_gae_hand_computed():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.4]])
    adv, ret = E.gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.5)
    # t2: delta = 1 - 0.4 = 0.6 (terminal: next value 0); t1: 0.4 - 0.2 + 0.5*0.6 = 0.5;
    # t0: 0.2 - 0.5 + 0.5*0.5 = -0.05. Returns = A + V.
    assert adv.tolist()[0] == pytest.approx([-0.05, 0.5, 0.6], abs=1e-6)
    assert ret.tolist()[0] == pytest.approx([0.45, 0.7, 1.0], abs=1e-6)


def test_gae_masks_padding():
    # The padded position holds junk (reward 99, value 7): it must neither bootstrap nor get credit.
    rewards = torch.tensor([[0.0, 1.0, 99.0]])
    values = torch.tensor([[0.5, 0.4, 7.0]])
    adv, ret = E.gae(rewards, values, torch.tensor([[1, 1, 0]]), gamma=0.9, lam=1.0)
    # t1 is terminal: 1 - 0.4 = 0.6; t0: 0.9*0.4 - 0.5 + 0.9*0.6 = 0.4.
    assert adv.tolist()[0] == pytest.approx([0.4, 0.6, 0.0], abs=1e-6)
    assert ret.tolist()[0] == pytest.approx([0.9, 1.0, 0.0], abs=1e-6)


def test_gae_rows_are_independent():
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    values = torch.tensor([[0.1, 0.2, 5.0], [0.3, 0.1, 0.2]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    adv, _ = E.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    alone, _ = E.gae(rewards[1:], values[1:], mask[1:], gamma=1.0, lam=1.0)
    assert torch.allclose(adv[1:], alone)
    # lam = gamma = 1: A_t = (sum of future rewards) - V_t.
    assert adv[0].tolist() == pytest.approx([1.0 - 0.1, 1.0 - 0.2, 0.0], abs=1e-6)
    assert adv[1].tolist() == pytest.approx([2.0 - 0.3, 2.0 - 0.1, 2.0 - 0.2], abs=1e-6)


def test_gae_estimator_puts_the_score_on_the_last_real_token_after_the_kl_rewards():
    scores = torch.tensor([[2.0], [1.0]])  # two prompts, k = 1
    kl_rewards = torch.tensor([[-0.05, 0.0, 0.1], [0.0, -0.1, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    values = torch.zeros(2, 3)
    adv, ret = run("gae", scores, mask=mask, kl_rewards=kl_rewards, values=values, gamma=1.0, lam=1.0)
    # row 0 rewards [-0.05, 0, 2.1]: rewards-to-go 2.05, 2.1, 2.1; row 1 [0, 0.9, pad]: 0.9, 0.9, 0
    assert adv.tolist()[0] == pytest.approx([2.05, 2.1, 2.1], abs=1e-6)
    assert adv.tolist()[1] == pytest.approx([0.9, 0.9, 0.0], abs=1e-6)
    assert torch.equal(ret, adv)  # values 0: returns = advantages
    with pytest.raises(ValueError, match="critic"):
        run("gae", scores, mask=mask)


def test_outcome_rewards_empty_response_gets_nothing():
    rewards = E.outcome_rewards(torch.zeros(1, 2), torch.tensor([5.0]), torch.zeros(1, 2))
    assert rewards.tolist() == [[0.0, 0.0]]


MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def test_token_advantages_broadcast_without_kl():
    adv = E.token_advantages(torch.tensor([2.0, -1.0]), MASK)
    assert adv.tolist() == [[2.0, 2.0, 2.0], [-1.0, -1.0, 0.0]]


def test_token_advantages_with_kl_in_the_reward_are_rewards_to_go():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])  # 9 is padding: ignored
    adv = E.token_advantages(torch.tensor([2.0, -1.0]), MASK, -0.5 * kl)
    # row 0 rewards [-0.05, -0.1, -0.15 + 2]; row 1 [-0.2, -0.25 - 1]
    assert adv[0].tolist() == pytest.approx([1.7, 1.75, 1.85], abs=1e-6)
    assert adv[1].tolist() == pytest.approx([-1.45, -1.25, 0.0], abs=1e-6)


def test_reward_to_go():
    r = E.reward_to_go(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1, 1, 0]]))
    assert r.tolist() == [[3.0, 2.0, 0.0]]


def test_registry_names_the_key_and_the_choices():
    assert list(E.ADV_ESTIMATORS)[:1] == ["gae"] and E.get_estimator("gae").critic
    assert {"grpo", "dr_grpo", "rloo", "reinforce_pp", "ref_baseline", "remax"} <= set(E.ADV_ESTIMATORS)
    with pytest.raises(ConfigError, match=r"pg: estimator: unknown 'ppo' \(choose from gae, grpo"):
        E.get_estimator("ppo", "pg: estimator")
    assert E.get_estimator("grpo").kl_mode == "loss" and E.get_estimator("dr_grpo").loss_agg == "seq_sum"
    assert E.get_estimator("grpo").min_k == 2 and E.get_estimator("remax").min_k == 1
