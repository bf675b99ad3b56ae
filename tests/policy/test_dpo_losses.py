import math

import pytest
import torch

from chatglm_rlhf.policy.dpo.losses import (
    chosen_nll,
    dpo_loss,
    masked_sequence_logps,
    preference_metrics,
)


def _t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


# Policy prefers the chosen by 0.5 nats more than the reference, and the rejected by 0.5 nats less:
# chosen ratio 0.5, rejected ratio -0.5.
PC, PR, RC, RR = _t(-1.0), _t(-2.0), _t(-1.5), _t(-1.5)


def test_sigmoid_dpo_hand_computed():
    losses, chosen, rejected = dpo_loss(PC, PR, RC, RR, beta=0.5)
    # h = beta * (0.5 - (-0.5)) = 0.5; loss = -log sigmoid(0.5) = log(1 + e^-0.5)
    assert losses.item() == pytest.approx(math.log(1 + math.exp(-0.5)), abs=1e-6)
    assert losses.item() == pytest.approx(0.474077, abs=1e-6)
    assert chosen.item() == pytest.approx(0.25)
    assert rejected.item() == pytest.approx(-0.25)


def test_sigmoid_dpo_is_log2_when_policy_equals_reference():
    losses, chosen, rejected = dpo_loss(RC, RR, RC, RR, beta=0.1)
    assert losses.item() == pytest.approx(math.log(2), abs=1e-6)
    assert chosen.item() == 0.0 and rejected.item() == 0.0


def test_conservative_dpo_label_smoothing_hand_computed():
    out = dpo_loss(PC, PR, RC, RR, beta=0.5, label_smoothing=0.1)
    # 0.9 * log(1 + e^-0.5) + 0.1 * log(1 + e^0.5) = 0.9 * 0.474077 + 0.1 * 0.974077
    assert out.losses.item() == pytest.approx(0.524077, abs=1e-6)
    # the rewards do not depend on the smoothing
    assert out.chosen_rewards.item() == pytest.approx(0.25)


def test_ipo_hand_computed_with_and_without_length_averaging():
    # summed: h = 1, target 1/(2*0.25) = 2 -> (1 - 2)^2 = 1
    assert dpo_loss(PC, PR, RC, RR, beta=0.25, loss_type="ipo").losses.item() == pytest.approx(1.0)
    # summed at beta 0.5: target 1 -> 0
    assert dpo_loss(PC, PR, RC, RR, beta=0.5, loss_type="ipo").losses.item() == pytest.approx(0.0)
    # averaged per token (chosen 2 tokens, rejected 4): 0.5/2 - (-0.5/4) = 0.375 -> (0.375 - 1)^2
    out = dpo_loss(PC, PR, RC, RR, 0.5, "ipo", chosen_lengths=_t(2), rejected_lengths=_t(4))
    assert out.losses.item() == pytest.approx(0.390625, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.25)  # rewards stay on summed log-ratios


def test_sigmoid_gradient_hand_computed():
    pc = PC.clone().requires_grad_(True)
    dpo_loss(pc, PR, RC, RR, beta=0.5).losses.sum().backward()
    # d/dpc -log sigmoid(beta h) = -beta * sigmoid(-beta h) = -0.5 * sigmoid(-0.5)
    assert pc.grad.item() == pytest.approx(-0.5 / (1 + math.exp(0.5)), abs=1e-6)


def test_losses_are_per_pair_and_rewards_carry_no_gradient():
    pc = _t(-1.0, -3.0).requires_grad_(True)
    out = dpo_loss(pc, _t(-2.0, -1.0), _t(-1.5, -1.5), _t(-1.5, -1.5), beta=1.0)
    assert out.losses.shape == (2,)
    assert out.losses[1] > out.losses[0]  # the second pair prefers the rejected
    assert not out.chosen_rewards.requires_grad


@pytest.mark.parametrize(
    "kw", [{"beta": 0.0}, {"beta": 0.1, "loss_type": "hinge"}, {"beta": 0.1, "label_smoothing": 0.5}]
)
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        dpo_loss(PC, PR, RC, RR, **kw)


def test_ipo_rejects_label_smoothing():
    with pytest.raises(ValueError, match="sigmoid"):
        dpo_loss(PC, PR, RC, RR, beta=0.1, loss_type="ipo", label_smoothing=0.1)


def test_chosen_nll_is_per_token():
    assert chosen_nll(_t(-6.0, -1.0), _t(3, 0)).tolist() == pytest.approx([2.0, 1.0])


def test_masked_sequence_logps_counts_response_tokens_only():
    token_logps = _t(-0.1, -0.2, -0.3).reshape(1, 3)  # predictions of x1, x2, x3
    labels = torch.tensor([[-100, -100, 5, 6]])  # x0, x1 prompt; x2, x3 response
    total, n = masked_sequence_logps(token_logps, labels)
    assert total.item() == pytest.approx(-0.5)
    assert n.item() == 2


def test_preference_metrics_hand_computed():
    m = preference_metrics(_t(1.0, -1.0, 0.5), _t(0.0, 0.0, 0.5))
    assert m["rewards/accuracy"] == pytest.approx(1 / 3)  # a tie is not a correct ranking
    assert m["rewards/margin"] == pytest.approx(0.0)
    assert m["rewards/chosen"] == pytest.approx(1 / 6)
