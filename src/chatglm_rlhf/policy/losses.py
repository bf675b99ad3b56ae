"""Loss math for the policy: small pure functions on tensors (unit-tested on hand-computed numbers).

The SFT next-token loss lives here because PPO reuses it as the ``ptx`` term (the paper's defence
against capability forgetting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def sft_loss(
    logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy on the positions whose label is not ``IGNORE_INDEX``.

    ``logits``: (B, T, V) for inputs x_0..x_{T-1}; ``labels``: (B, T), aligned with the inputs (the
    label of position t is x_t, -100 where masked: history and prompt). Position t's logits predict
    x_{t+1}, so we shift by one. Returns ``(loss, n_tokens)``; ``reduction="sum"`` lets a trainer that
    accumulates gradients over micro-batches divide by the token count of the whole step instead.
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    n_tokens = mask.sum()
    token_loss = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    total = token_loss.sum()
    if reduction == "sum":
        return total, n_tokens
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return total / n_tokens.clamp(min=1), n_tokens


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(x_{t+1} | x_<=t) for every position: (B, T-1). Shared by PPO and DPO.

    Computed as logit - logsumexp rather than a full log_softmax so the (B, T, V) log-prob tensor is
    never materialised twice.
    """
    logits = logits[:, :-1, :].float()
    targets = input_ids[:, 1:].unsqueeze(-1)
    picked = torch.gather(logits, -1, targets).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)
