"""From scores to the sequence reward, the KL controllers and the running moments, by hand."""

import math

import torch

from chatglm_rlhf.policy.online import rewards as R


def test_reference_baseline_and_penalties():
    out = R.reference_baseline_reward(torch.tensor([1.0, 0.3]), torch.tensor([0.4, 0.5]))
    assert torch.allclose(out, torch.tensor([0.6, -0.2]))
    assert R.truncation_penalty(torch.tensor([1.0, 1.0]), torch.tensor([True, False]), 0.5).tolist() == [
        1.0,
        0.5,
    ]
    assert R.clip_rewards(torch.tensor([-3.0, 0.5, 3.0]), 1.0).tolist() == [-1.0, 0.5, 1.0]
    assert R.clip_rewards(torch.tensor([-3.0]), 0.0).tolist() == [-3.0]


def test_sequence_rewards_applies_penalty_then_baseline_then_clip():
    raw, finished = torch.tensor([2.0, 1.0, -4.0]), torch.tensor([True, False, True])
    ref = torch.tensor([0.5, 0.5, 0.0])
    out = R.sequence_rewards(raw, ref, finished, penalty=1.0, clip=1.0)
    # 2 - 0.5 = 1.5 -> clipped 1; 1 - 1 (cut) - 0.5 = -0.5; -4 -> clipped -1
    assert out.tolist() == [1.0, -0.5, -1.0]
    assert R.sequence_rewards(raw, None, finished).tolist() == raw.tolist()  # nothing configured: as is


def test_sequence_rewards_normalises_with_running_moments():
    m = R.RunningMoments()
    out = R.sequence_rewards(torch.tensor([1.0, 3.0]), None, torch.tensor([True, True]), moments=m)
    assert m.count == 2 and math.isclose(m.mean, 2.0)
    assert out.tolist() == [-1.0, 1.0]  # population std 1


def test_adaptive_kl_controller():
    ctl = R.AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(9.0, n_steps=10)  # error 0.5 clipped to 0.2: beta * (1 + 0.2 * 10 / 100)
    assert math.isclose(ctl.value, 0.102)
    ctl.update(3.0, n_steps=10)  # error -0.5 clipped to -0.2
    assert math.isclose(ctl.value, 0.102 * 0.98)
    fixed = R.FixedKLController(0.1)
    fixed.update(100.0, 10)
    assert fixed.value == 0.1
    restored = R.AdaptiveKLController(0.5, 6.0, 100)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value


def test_running_moments():
    m = R.RunningMoments()
    m.update(torch.tensor([1.0, 2.0, 3.0]))
    m.update(torch.tensor([4.0, 5.0]))
    assert math.isclose(m.mean, 3.0) and math.isclose(m.var, 2.0) and m.count == 5
    assert torch.allclose(m.normalize(torch.tensor([3.0 + math.sqrt(2.0)])), torch.tensor([1.0]))


def test_whiten_batch_in_one_process_is_the_masked_whitening():
    from chatglm_rlhf.utils.distributed import Ranks

    x, mask = torch.tensor([[1.0, 3.0, 100.0]]), torch.tensor([[1, 1, 0]])
    out = R.whiten_batch(x, mask, Ranks())
    assert torch.allclose(out[0], torch.tensor([-1 / math.sqrt(2), 1 / math.sqrt(2), 0.0]), atol=1e-5)
