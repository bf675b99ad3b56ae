import math

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
