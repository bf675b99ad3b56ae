"""PPO math on hand-computed numbers (see the comments for each expected value)."""

import math

import pytest
import torch

from chatglm_rlhf.policy.ppo import losses as L


def close(a, b, tol=1e-5):
    return torch.allclose(
        torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol
    )


def test_gae_hand_computed():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.4]])
    adv, ret = L.gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.5)
    # t2: delta = 1 - 0.4 = 0.6 (terminal: next value 0); t1: 0.4 - 0.2 + 0.5*0.6 = 0.5;
    # t0: 0.2 - 0.5 + 0.5*0.5 = -0.05. Returns = A + V.
    assert close(adv, [[-0.05, 0.5, 0.6]])
    assert close(ret, [[0.45, 0.7, 1.0]])


def test_gae_masks_padding():
    # The padded position holds junk (reward 99, value 7): it must neither bootstrap nor get credit.
    rewards = torch.tensor([[0.0, 1.0, 99.0]])
    values = torch.tensor([[0.5, 0.4, 7.0]])
    mask = torch.tensor([[1, 1, 0]])
    adv, ret = L.gae(rewards, values, mask, gamma=0.9, lam=1.0)
    # t1 is terminal: 1 - 0.4 = 0.6; t0: 0.9*0.4 - 0.5 + 0.9*0.6 = 0.4.
    assert close(adv, [[0.4, 0.6, 0.0]])
    assert close(ret, [[0.9, 1.0, 0.0]])


def test_gae_rows_are_independent():
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    values = torch.tensor([[0.1, 0.2, 5.0], [0.3, 0.1, 0.2]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    adv, _ = L.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    alone, _ = L.gae(rewards[1:], values[1:], mask[1:], gamma=1.0, lam=1.0)
    assert close(adv[1:], alone)
    # lam = gamma = 1: A_t = (sum of future rewards) - V_t.
    assert close(adv[0], [1.0 - 0.1, 1.0 - 0.2, 0.0])
    assert close(adv[1], [2.0 - 0.3, 2.0 - 0.1, 2.0 - 0.2])


def test_whiten_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # mean 2, unbiased variance 1; padding comes back as 0.
    assert close(L.whiten(x, mask), [[-1.0, 0.0, 1.0, 0.0]], tol=1e-4)
    assert close(L.whiten(x, mask, shift_mean=False), [[1.0, 2.0, 3.0, 0.0]], tol=1e-4)


def test_policy_loss_clipping():
    old = torch.zeros(1, 3)
    logprobs = torch.tensor([[math.log(1.5), math.log(0.5), math.log(1.1)]], requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, -2.0]])
    loss, stats = L.ppo_policy_loss(logprobs, old, adv, torch.ones(1, 3), clip_range=0.2)
    # t0: ratio 1.5, A=1 -> max(-1.5, -1.2) = -1.2 (clipped); t1: ratio 0.5 -> max(-0.5, -0.8) = -0.5;
    # t2: ratio 1.1, A=-2 -> 2.2 (inside the range). Mean = 0.5 / 3.
    assert close(loss, 0.5 / 3)
    assert close(stats.clip_frac, 1 / 3)
    loss.backward()
    # The clipped token gets no gradient; t1's gradient is -A * ratio / n = -0.5 / 3.
    assert close(logprobs.grad, [[0.0, -0.5 / 3, 2.0 * 1.1 / 3]])


def test_policy_loss_mask_and_approx_kl():
    old = torch.zeros(1, 3)
    logprobs = torch.tensor([[math.log(1.5), math.log(0.5), 50.0]])  # padding holds junk
    adv = torch.tensor([[1.0, 1.0, 3.0]])
    loss, stats = L.ppo_policy_loss(logprobs, old, adv, torch.tensor([[1, 1, 0]]), clip_range=0.2)
    assert close(loss, (-1.2 - 0.5) / 2)
    assert close(stats.clip_frac, 0.5)
    # k3 of the ratio: (r - 1) - log r, averaged over the two real tokens.
    k3 = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2
    assert close(stats.approx_kl, k3)


def test_value_loss_clipping():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.5, 0.5]])
    returns = torch.tensor([[2.0, 0.0]])
    mask = torch.ones(1, 2)
    loss, clip_frac = L.ppo_value_loss(values, old, returns, mask, clip_range_value=0.2)
    # t0: (1-2)^2 = 1 vs clipped value 0.7: (0.7-2)^2 = 1.69; t1: 0 vs clipped 0.3: 0.09.
    assert close(loss, 0.5 * (1.69 + 0.09) / 2)
    assert close(clip_frac, 1.0)
    plain, _ = L.ppo_value_loss(values, old, returns, mask, clip_range_value=0.0)
    assert close(plain, 0.5 * (1.0 + 0.0) / 2)


def test_entropy_from_logits():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])
    h = L.entropy_from_logits(logits)
    assert close(h, [[math.log(2.0), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]])


def test_kl_estimators():
    lp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert close(L.kl_penalty(lp, ref, "k1"), [math.log(2.0)])
    # k3 with r = q/p = 0.5: (r - 1) - log r = -0.5 + log 2.
    assert close(L.kl_penalty(lp, ref, "k3"), [-0.5 + math.log(2.0)])
    # k3 is never negative, k1 is when the policy is less likely than the reference.
    assert float(L.kl_penalty(ref, lp, "k1")) < 0 < float(L.kl_penalty(ref, lp, "k3"))
    with pytest.raises(ValueError):
        L.kl_penalty(lp, ref, "k2")


def test_reference_baseline_and_penalties():
    assert close(L.reference_baseline_reward(torch.tensor([1.0, 0.3]), torch.tensor([0.4, 0.5])), [0.6, -0.2])
    assert close(L.truncation_penalty(torch.tensor([1.0, 1.0]), torch.tensor([True, False]), 0.5), [1.0, 0.5])
    assert close(L.clip_rewards(torch.tensor([-3.0, 0.5, 3.0]), 1.0), [-1.0, 0.5, 1.0])
    assert close(L.clip_rewards(torch.tensor([-3.0]), 0.0), [-3.0])


def test_shape_rewards_puts_score_on_last_real_token():
    scores = torch.tensor([2.0, 1.0])
    lp = torch.tensor([[0.0, -1.0, -2.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-0.5, -1.0, -1.0], [-1.0, -2.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards, kl = L.shape_rewards(scores, lp, ref, mask, kl_coef=0.1, estimator="k1")
    # row 0: kl = [0.5, 0, -1] -> -0.1*kl, +2 at t2; row 1: kl = [0, 1, (pad)] -> +1 at t1.
    assert close(kl, [[0.5, 0.0, -1.0], [0.0, 1.0, 0.0]])
    assert close(rewards, [[-0.05, 0.0, 2.1], [0.0, 0.9, 0.0]])


def test_shape_rewards_empty_response_gets_nothing():
    rewards, _ = L.shape_rewards(
        torch.tensor([5.0]), torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), 0.1
    )
    assert close(rewards, [[0.0, 0.0]])


def test_actor_loss_mixes_ptx_and_entropy():
    pg, ptx = torch.tensor(1.0), torch.tensor(2.0)
    assert close(L.actor_loss(pg, ptx, 0.5), 2.0)
    assert close(L.actor_loss(pg, ptx, 0.0), 1.0)
    assert close(L.actor_loss(pg, None, 0.5), 1.0)
    assert close(L.actor_loss(pg, ptx, 0.5, torch.tensor(0.3), 0.1), 1.97)


def test_adaptive_kl_controller():
    ctl = L.AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(9.0, n_steps=10)  # error 0.5 clipped to 0.2: beta * (1 + 0.2 * 10 / 100)
    assert math.isclose(ctl.value, 0.102)
    ctl.update(3.0, n_steps=10)  # error -0.5 clipped to -0.2
    assert math.isclose(ctl.value, 0.102 * 0.98)
    fixed = L.FixedKLController(0.1)
    fixed.update(100.0, 10)
    assert fixed.value == 0.1
    restored = L.AdaptiveKLController(0.5, 6.0, 100)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value


def test_running_moments():
    m = L.RunningMoments()
    m.update(torch.tensor([1.0, 2.0, 3.0]))
    m.update(torch.tensor([4.0, 5.0]))
    assert math.isclose(m.mean, 3.0) and math.isclose(m.var, 2.0) and m.count == 5
    assert close(m.normalize(torch.tensor([3.0 + math.sqrt(2.0)])), [1.0])
