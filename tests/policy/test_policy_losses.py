import math

import pytest
import torch

from chatglm_rlhf.policy.losses import sft_loss, token_logprobs


def test_sft_loss_only_counts_unmasked_next_tokens():
    # vocab 2; logits favour token 0 with logit 0 vs log(3) for token 1 at every position.
    logits = torch.tensor([[[0.0, math.log(3.0)]] * 3])  # (1, 3, 2): p(0)=1/4, p(1)=3/4
    labels = torch.tensor([[-100, 0, 1]])  # position 0 is the prompt (masked)
    loss, n = sft_loss(logits, labels)
    # predicted tokens: x1=0 (p=1/4), x2=1 (p=3/4)
    expected = (math.log(4.0) + math.log(4.0 / 3.0)) / 2
    assert int(n) == 2
    assert abs(float(loss) - expected) < 1e-6
    loss_sum, _ = sft_loss(logits, labels, reduction="sum")
    assert abs(float(loss_sum) - 2 * expected) < 1e-6


def test_sft_loss_ignores_prompt_tokens_entirely():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 7)
    labels = torch.tensor([[-100, -100, -100, 4, 2]])
    changed = logits.clone()
    changed[0, 0, 3] += 10.0  # logits at position 0 predict x1, a prompt token: must not matter
    changed[0, 1, 3] += 10.0
    assert torch.allclose(sft_loss(logits, labels)[0], sft_loss(changed, labels)[0])
    changed[0, 2, 3] += 10.0  # position 2 predicts x3, a response token: must matter
    assert not torch.allclose(sft_loss(logits, labels)[0], sft_loss(changed, labels)[0])


def test_token_logprobs_matches_log_softmax():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 5)
    ids = torch.randint(0, 5, (2, 4))
    ref = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    assert torch.allclose(token_logprobs(logits, ids), ref, atol=1e-6)


# --- the shared loss math (policy/losses.py) ------------------------------------------------------------

from chatglm_rlhf.policy import losses as L  # noqa: E402


def close(a, b, tol=1e-5):
    return torch.allclose(
        torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol
    )


def test_whiten_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # mean 2, unbiased variance 1; padding comes back as 0.
    assert close(L.whiten(x, mask), [[-1.0, 0.0, 1.0, 0.0]], tol=1e-4)
    assert close(L.whiten(x, mask, shift_mean=False), [[1.0, 2.0, 3.0, 0.0]], tol=1e-4)


def _token_mean(per_token, mask):
    num, den = L.aggregate(per_token, mask, "token_mean")
    return num / den


def test_policy_loss_clipping():
    old = torch.zeros(1, 3)
    logprobs = torch.tensor([[math.log(1.5), math.log(0.5), math.log(1.1)]], requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, -2.0]])
    per_token, stats = L.clipped_token_loss(logprobs, old, adv, torch.ones(1, 3), clip_range=0.2)
    loss = _token_mean(per_token, torch.ones(1, 3))
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
    mask = torch.tensor([[1, 1, 0]])
    per_token, stats = L.clipped_token_loss(logprobs, old, adv, mask, clip_range=0.2)
    assert close(_token_mean(per_token, mask), (-1.2 - 0.5) / 2)
    assert close(stats.clip_frac, 0.5)
    # k3 of the ratio: (r - 1) - log r, averaged over the two real tokens.
    k3 = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2
    assert close(stats.approx_kl, k3)


def test_clipped_token_loss_takes_the_pessimistic_branch():
    lp = torch.tensor([[0.5, 0.5, -0.5]])
    adv = torch.tensor([[1.0, -1.0, 1.0]])
    per_token, stats = L.clipped_token_loss(lp, torch.zeros_like(lp), adv, torch.ones_like(lp), 0.2)
    # ratio e^0.5 = 1.6487: A=1 -> clipped -1.2; A=-1 -> unclipped 1.6487; ratio e^-0.5, A=1 -> -0.6065
    assert per_token[0].tolist() == pytest.approx([-1.2, math.exp(0.5), -math.exp(-0.5)], abs=1e-5)
    assert float(stats.clip_frac) == pytest.approx(1 / 3)


def test_value_loss_clipping():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.5, 0.5]])
    returns = torch.tensor([[2.0, 0.0]])
    mask = torch.ones(1, 2)
    per_token, clip_frac = L.value_token_loss(values, old, returns, mask, clip_range_value=0.2)
    # t0: (1-2)^2 = 1 vs clipped value 0.7: (0.7-2)^2 = 1.69; t1: 0 vs clipped 0.3: 0.09.
    assert close(per_token, [[1.69, 0.09]])
    assert close(clip_frac, 1.0)
    plain, _ = L.value_token_loss(values, old, returns, mask, clip_range_value=0.0)
    assert close(plain, [[1.0, 0.0]])
    padded, _ = L.value_token_loss(values, old, returns, torch.tensor([[1, 0]]), clip_range_value=0.0)
    assert close(padded, [[1.0, 0.0]])  # padding counts nothing


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


def test_k3_kl_is_the_nonnegative_estimate_with_gradient():
    lp = torch.tensor([[0.0, math.log(0.5)]], requires_grad=True)
    ref = torch.tensor([[math.log(0.5), math.log(0.5)]])
    kl = L.k3_kl(lp, ref, torch.tensor([[1, 1]]))
    # q - p = log 0.5: 0.5 - log 0.5 - 1 = 0.19315; equal log-probs: 0
    assert kl[0].tolist() == pytest.approx([0.5 + math.log(2) - 1, 0.0], abs=1e-6)
    kl.sum().backward()
    assert lp.grad[0, 0] > 0  # pushing log p up (away from q) raises the KL


MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def test_aggregate_reductions():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])  # 100 is padding
    assert [float(x) for x in L.aggregate(per_token, MASK, "token_mean")] == [15.0, 5.0]
    assert [float(x) for x in L.aggregate(per_token, MASK, "seq_mean")] == [2.0 + 4.5, 2.0]
    assert [float(x) for x in L.aggregate(per_token, MASK, "seq_sum", max_len=4)] == [15 / 4, 2.0]
    with pytest.raises(ValueError, match="aggregation"):
        L.aggregate(per_token, MASK, "sum")


def test_aggregate_splits_exactly_over_micro_batches():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    for mode in ("token_mean", "seq_mean", "seq_sum"):
        whole = L.aggregate(per_token, MASK, mode, 3)
        parts = [L.aggregate(per_token[i : i + 1], MASK[i : i + 1], mode, 3) for i in range(2)]
        assert float(whole[0] / whole[1]) == pytest.approx(
            float(sum(p[0] for p in parts) / sum(p[1] for p in parts))
        ), mode
