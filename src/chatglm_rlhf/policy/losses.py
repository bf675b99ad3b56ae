"""Loss math shared by every policy trainer: small pure functions on tensors (each unit-tested on
hand-computed numbers).

The SFT next-token loss (the online trainers' ``ptx`` term: the paper's defence against capability
forgetting), token log-probs, masked statistics, KL estimators, the clipped surrogate, the value loss
and the reduction of per-token losses. Advantage estimators are in :mod:`chatglm_rlhf.policy.online.estimators`.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

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


# --- masked statistics -------------------------------------------------------------------------------
# Per-token tensors are ``(B, T)`` over the *response* tokens, right-padded, with ``mask`` (1 = a real
# response token). Padding never contributes to a mean.


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (all of them when ``dim`` is None)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked entries (Bessel-corrected by default, like ``torch.var``)."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Scale the masked entries of ``x`` to unit variance (and zero mean with ``shift_mean``).

    Padding comes back as 0, so a later masked mean is unaffected whatever it held before.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


# --- KL to the reference and entropy -----------------------------------------------------------------

KLEstimator = Literal["k1", "k3"]
KL_ESTIMATORS = typing.get_args(KLEstimator)  # one list: the config key and the estimator agree


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probs.

    ``k1 = log p - log q`` (unbiased, can be negative per token); ``k3 = (q/p - 1) - log(q/p)`` (unbiased
    and always >= 0, lower variance). Here p is the policy and q the reference.
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"kl estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token k3 KL(policy || reference) with gradient through ``logprobs``: the KL as a loss term
    (GRPO's). 0 on padding."""
    return kl_penalty(logprobs, ref_logprobs, "k3") * mask.to(logprobs.dtype)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of the softmax over the last dim: ``logsumexp(z) - sum(p * z)``."""
    logits = logits.float()
    p = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(-1)


# --- the clipped policy loss, the value loss, and their reduction -------------------------------------


@dataclass
class PolicyLossStats:
    clip_frac: torch.Tensor  # share of tokens whose ratio was clipped (the clipped branch was active)
    approx_kl: torch.Tensor  # k3 estimate of KL(old || new): how far this update moved
    ratio_mean: torch.Tensor


def clipped_token_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
) -> tuple[torch.Tensor, PolicyLossStats]:
    """Per-token clipped surrogate ``max(-A * ratio, -A * clip(ratio, 1 +- eps))``, ``(B, T)``, 0 on
    padding; :func:`aggregate` reduces it (its token mean is PPO's loss)."""
    m = mask.to(logprobs.dtype)
    log_ratio = (logprobs - old_logprobs) * m
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    per_token = torch.maximum(unclipped, clipped) * m
    with torch.no_grad():
        stats = PolicyLossStats(
            clip_frac=masked_mean((clipped > unclipped).to(logprobs.dtype), mask),
            approx_kl=masked_mean((ratio - 1.0) - log_ratio, mask),
            ratio_mean=masked_mean(ratio, mask),
        )
    return per_token, stats


def value_token_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float | None = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``0.5 * max((V - R)^2, (clip(V, V_old +- eps) - R)^2)`` before the 0.5 (the caller
    halves the reduced sum) and the clipped share; ``clip_range_value`` None or <= 0: plain error."""
    err = (values - returns) ** 2
    if clip_range_value is None or clip_range_value <= 0:
        return err * mask.to(err.dtype), torch.zeros((), dtype=values.dtype)
    v_clip = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    err_clip = (v_clip - returns) ** 2
    clip_frac = masked_mean((err_clip > err).to(values.dtype), mask).detach()
    return torch.maximum(err, err_clip) * mask.to(err.dtype), clip_frac


def aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, mode: str, max_len: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(numerator, denominator)`` of a per-token loss; the loss is their ratio over the whole minibatch
    (a trainer sums both over micro-batches and processes before dividing, so splitting changes nothing).

    * ``token_mean``: every token of the minibatch weighs the same (sum / tokens): PPO's reduction; a
      long response's tokens are not down-weighted (``seq_mean`` favours short right answers and long
      wrong ones, DAPO's and Dr. GRPO's point).
    * ``seq_mean``: mean over responses of each response's token mean (the original GRPO).
    * ``seq_sum``: each response's token sum divided by the constant ``max_len`` (max_new_tokens), mean
      over responses: Dr. GRPO's length-unbiased reduction.
    """
    m = mask.to(per_token.dtype)
    if mode == "token_mean":
        return (per_token * m).sum(), m.sum()
    rows = (m.sum(-1) > 0).to(per_token.dtype)  # a response with no token has nothing to average
    if mode == "seq_mean":
        return ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1)).sum(), rows.sum()
    if mode == "seq_sum":
        return (per_token * m).sum() / max_len, rows.sum()
    raise ValueError(f"loss aggregation must be token_mean, seq_mean or seq_sum, got {mode!r}")
