"""DPO loss math: small pure functions on tensors (unit-tested on hand-computed numbers).

Notation: ``pc, pr`` are the policy's summed log-probs of the chosen / rejected response tokens,
``rc, rr`` the reference model's. The implicit reward of a response is ``beta * (log pi - log ref)``
(Rafailov et al. 2023), and every variant below is a function of the margin
``h = (pc - rc) - (pr - rr)``:

``sigmoid``  -log sigmoid(beta * h)                      (DPO)
``sigmoid`` with ``label_smoothing = eps``:
             -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)   (conservative DPO: labels flipped
             with probability eps)
``ipo``      (h' - 1 / (2 beta))^2                        (IPO, Azar et al. 2023; ``beta`` is their tau)

For IPO, ``h'`` uses per-token *average* log-probs when the response lengths are given: the squared loss
otherwise grows with response length, and the IPO authors' results (and TRL) use the averaged form.
The optional NLL term on the chosen response (RPO, Pang et al. 2024) is :func:`chosen_nll`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
LOSS_TYPES = ("sigmoid", "ipo")


@dataclass
class DPOLossOutput:
    """Per-pair losses and implicit rewards (the rewards carry no gradient)."""

    losses: torch.Tensor  # (B,)
    chosen_rewards: torch.Tensor  # (B,) beta * (pc - rc)
    rejected_rewards: torch.Tensor  # (B,) beta * (pr - rr)

    def __iter__(self):  # ``losses, chosen, rejected = dpo_loss(...)``
        return iter((self.losses, self.chosen_rewards, self.rejected_rewards))


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> DPOLossOutput:
    """Per-pair DPO / conservative DPO / IPO losses (see the module docstring); no reduction.

    ``chosen_lengths`` / ``rejected_lengths`` (response token counts) are used by IPO only, to average
    the log-ratios per token. ``label_smoothing`` applies to ``sigmoid`` only and must be in [0, 0.5).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if loss_type == "ipo" and label_smoothing:
        raise ValueError("label_smoothing is defined for loss_type='sigmoid' only (conservative DPO)")
    chosen_ratio = policy_chosen_logps.float() - ref_chosen_logps.float()
    rejected_ratio = policy_rejected_logps.float() - ref_rejected_logps.float()
    if loss_type == "sigmoid":
        h = beta * (chosen_ratio - rejected_ratio)
        losses = -(1.0 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h)
    else:
        c, r = chosen_ratio, rejected_ratio
        if chosen_lengths is not None and rejected_lengths is not None:
            c = c / chosen_lengths.float().clamp(min=1.0)
            r = r / rejected_lengths.float().clamp(min=1.0)
        losses = (c - r - 1.0 / (2.0 * beta)) ** 2
    return DPOLossOutput(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


def chosen_nll(chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """Per-pair NLL of the chosen response, per token: ``-sum log p / n_tokens`` (B,).

    Added to the DPO loss with a weight (``nll_weight``), it keeps the chosen response's likelihood from
    falling while the margin grows (RPO).
    """
    return -chosen_logps.float() / chosen_lengths.float().clamp(min=1.0)


def masked_sequence_logps(
    token_logps: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log-probs over the response tokens, response token count), both (B,).

    ``token_logps`` is ``token_logprobs(logits, input_ids)``: (B, T-1), position t scoring x_{t+1}.
    ``labels`` is (B, T) with ``IGNORE_INDEX`` on prompt and padding, so ``labels[:, 1:]`` marks which
    of those predictions are response tokens.
    """
    mask = labels[:, 1:] != IGNORE_INDEX
    return (token_logps * mask).sum(-1), mask.sum(-1)


def preference_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, float]:
    """Mean implicit rewards, margin and accuracy (share of pairs whose chosen reward is strictly higher)."""
    margin = chosen_rewards - rejected_rewards
    return {
        "rewards/chosen": float(chosen_rewards.mean()),
        "rewards/rejected": float(rejected_rewards.mean()),
        "rewards/margin": float(margin.mean()),
        "rewards/accuracy": float((margin > 0).float().mean()),
    }
