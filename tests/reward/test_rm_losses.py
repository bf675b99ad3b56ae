"""Reward-model loss math on hand-computed numbers."""

import math

import pytest
import torch

from chatglm_rlhf.reward.losses import (
    bt_loss,
    centering_regulariser,
    margin_from_strength,
    pair_accuracy,
    reward_loss,
    score_regulariser,
)


def _log1pexp(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bt_loss_matches_hand_values():
    r_c, r_r = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([1.0, 0.0, 1.0])
    # -log σ(d) = log(1 + e^{-d}) for d = 1, 0, -2
    expected = [_log1pexp(-1.0), math.log(2.0), _log1pexp(2.0)]
    assert bt_loss(r_c, r_r).tolist() == pytest.approx(expected, rel=1e-6)


def test_bt_loss_margin_shifts_the_difference():
    r_c, r_r = torch.tensor([2.0]), torch.tensor([1.0])
    # d - m = 1 - 0.5 = 0.5
    assert bt_loss(r_c, r_r, margin=0.5).item() == pytest.approx(_log1pexp(-0.5), rel=1e-6)
    per_pair = bt_loss(torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.0]), margin=torch.tensor([0.0, 1.0]))
    assert per_pair.tolist() == pytest.approx([_log1pexp(-1.0), math.log(2.0)], rel=1e-6)


def test_tie_target_is_symmetric_and_minimal_at_zero():
    d = torch.tensor([1.5])
    tie = bt_loss(d, torch.zeros(1), target=0.5).item()
    # -(0.5 log σ(1.5) + 0.5 log σ(-1.5))
    expected = 0.5 * _log1pexp(-1.5) + 0.5 * _log1pexp(1.5)
    assert tie == pytest.approx(expected, rel=1e-6)
    assert bt_loss(-d, torch.zeros(1), target=0.5).item() == pytest.approx(expected, rel=1e-6)
    assert bt_loss(torch.zeros(1), torch.zeros(1), target=0.5).item() == pytest.approx(math.log(2.0))
    # target 1 equals the plain loss; the margin is ignored for ties
    assert bt_loss(d, torch.zeros(1), target=1.0).item() == pytest.approx(bt_loss(d, torch.zeros(1)).item())
    assert bt_loss(d, torch.zeros(1), margin=1.0, target=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_bt_loss_is_stable_for_large_differences():
    loss = bt_loss(torch.tensor([-200.0]), torch.tensor([200.0]))
    assert torch.isfinite(loss).all() and loss.item() == pytest.approx(400.0)


def test_regularisers():
    r_c, r_r = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 2.0])
    assert score_regulariser(r_c, r_r, 0.1).tolist() == pytest.approx([1.0, 0.8])  # 0.1*(1+9), 0.1*(4+4)
    assert centering_regulariser(r_c, r_r, 0.1).tolist() == pytest.approx([1.6, 0.0])  # 0.1*16, 0.1*0


def test_margin_from_strength_maps_unknown_to_zero():
    m = margin_from_strength(torch.tensor([1.0, 2.0, float("nan")]), 0.5)
    assert m.tolist() == [0.5, 1.0, 0.0]


def test_reward_loss_combines_and_weights():
    r_c, r_r = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    bt = [_log1pexp(-1.0), math.log(2.0)]
    reg = [0.01 * 1.0, 0.0]
    w = torch.tensor([3.0, 1.0])
    total = 3 * (bt[0] + reg[0]) + (bt[1] + reg[1])
    got_sum = reward_loss(r_c, r_r, weight=w, reg_coef=0.01, reduction="sum").item()
    assert got_sum == pytest.approx(total, rel=1e-6)
    assert reward_loss(r_c, r_r, weight=w, reg_coef=0.01).item() == pytest.approx(total / 4, rel=1e-6)
    center = reward_loss(r_c, r_r, center_coef=0.5).item()
    assert center == pytest.approx((bt[0] + 0.5 + bt[1]) / 2, rel=1e-6)
    with pytest.raises(ValueError):
        reward_loss(r_c, r_r, reduction="max")


def test_reward_loss_gradient_pushes_chosen_up():
    r_c = torch.tensor([0.0], requires_grad=True)
    r_r = torch.tensor([0.0], requires_grad=True)
    reward_loss(r_c, r_r).backward()
    assert r_c.grad.item() == pytest.approx(-0.5) and r_r.grad.item() == pytest.approx(0.5)


def test_pair_accuracy_counts_exact_ties_half():
    assert (
        pair_accuracy(torch.tensor([1.0, 0.0, 2.0, 1.0]), torch.tensor([0.0, 1.0, 2.0, 0.5])).item() == 0.625
    )
