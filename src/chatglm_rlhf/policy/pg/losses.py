"""Critic-free policy-gradient math: advantage estimators and the loss, as pure functions on tensors.

Each estimator turns the scores of ``k`` responses per prompt, ``(N, k)``, into one advantage per
response; :func:`token_advantages` spreads it over the response tokens (with the per-token KL penalty
when the KL is part of the reward, as in PPO), and :func:`aggregate` reduces per-token losses to the
numerator and denominator of the objective. Every function is unit-tested on hand-computed numbers
(``tests/policy/pg/test_pg_losses.py``).

Estimators (``estimator=``):

* ``grpo``: ``(r - mean_group) / (std_group + eps)`` (Shao et al. 2024, DeepSeekMath).
* ``dr_grpo``: ``r - mean_group``; no std division and (see :func:`aggregate`) no per-response length
  normalisation, both of which bias GRPO (Liu et al. 2025, "Understanding R1-Zero-like training").
* ``rloo``: ``r - mean of the other k - 1`` (Ahmadian et al. 2024): an unbiased leave-one-out baseline.
* ``reinforce_pp``: no per-prompt baseline; the advantages are normalised over the whole batch
  (Hu 2025, REINFORCE++), after the KL reward when the KL is in the reward.
* ``ref_baseline``: ``r - r(x, y_ref)``, y_ref the SFT model's answer (the ChatGLM-RLHF paper's
  baseline, used without a critic, as ReMax uses the greedy answer).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

import torch

from chatglm_rlhf.policy.ppo.losses import kl_penalty, masked_mean, whiten

Estimator = Literal["grpo", "dr_grpo", "rloo", "reinforce_pp", "ref_baseline"]
ESTIMATORS = typing.get_args(Estimator)
GROUP_ESTIMATORS = ("grpo", "dr_grpo", "rloo")  # a baseline from the other samples: k >= 2
LossAgg = Literal["token_mean", "seq_mean", "seq_sum"]


# --- advantage estimators: (N, k) scores -> (N, k) advantages ----------------------------------------


def group_advantages(scores: torch.Tensor, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO: each score minus its group's mean, divided by the group's (Bessel-corrected) std with
    ``scale`` (as TRL and OpenRLHF compute it); ``scale=False`` is Dr. GRPO's unscaled difference.

    A group whose k scores are equal gets advantages of 0 either way (eps keeps the division finite).
    """
    centred = scores - scores.mean(-1, keepdim=True)
    if not scale:
        return centred
    return centred / (scores.std(-1, keepdim=True) + eps)


def rloo_advantages(scores: torch.Tensor) -> torch.Tensor:
    """RLOO: ``r_i - (sum_j r_j - r_i) / (k - 1)``, the mean of the other samples as the baseline.

    Equal to ``k / (k - 1) * (r_i - mean)``; the baseline does not depend on ``r_i``, so the
    gradient estimate stays unbiased.
    """
    k = scores.shape[-1]
    if k < 2:
        raise ValueError("rloo needs k >= 2 samples per prompt")
    others = (scores.sum(-1, keepdim=True) - scores) / (k - 1)
    return scores - others


def reference_advantages(scores: torch.Tensor, ref_scores: torch.Tensor) -> torch.Tensor:
    """The paper's baseline without a critic: ``r(x, y_i) - r(x, y_ref)`` for every sample of prompt x.

    ``ref_scores``: (N,), the cached score of the SFT model's answer to each prompt.
    """
    return scores - ref_scores.to(scores.dtype)[:, None]


def sequence_advantages(
    estimator: str, scores: torch.Tensor, ref_scores: torch.Tensor | None = None
) -> torch.Tensor:
    """The per-response advantage of ``estimator`` before any KL term; ``reinforce_pp`` returns the
    scores unchanged (its normalisation is over the whole batch, across ranks: the trainer's job)."""
    if estimator == "grpo":
        return group_advantages(scores, scale=True)
    if estimator == "dr_grpo":
        return group_advantages(scores, scale=False)
    if estimator == "rloo":
        return rloo_advantages(scores)
    if estimator == "reinforce_pp":
        return scores
    if estimator == "ref_baseline":
        if ref_scores is None:
            raise ValueError("ref_baseline needs the reference answers' scores")
        return reference_advantages(scores, ref_scores)
    raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


def batch_normalize(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """REINFORCE++'s normalisation on one process: zero mean, unit (Bessel) std over the masked entries
    of the whole batch (``ppo.losses.whiten``; several processes use ``rollout.whiten_across``)."""
    return whiten(x, torch.ones_like(x) if mask is None else mask)


# --- advantages per token ----------------------------------------------------------------------------


def reward_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``A_t = sum_{s >= t} r_s`` over each row's real tokens (gamma = 1, no value baseline); 0 on padding."""
    m = mask.to(rewards.dtype)
    r = rewards * m
    return torch.flip(torch.cumsum(torch.flip(r, [-1]), -1), [-1]) * m


def token_advantages(
    seq_adv: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    """Per-token advantages ``(B, T)`` from per-response ones ``(B,)``.

    Without ``kl`` every real token of a response gets its response's advantage (the KL is then a loss
    term). With ``kl`` (per-token estimates, KL in the reward as PPO does) the reward is ``-kl_coef *
    kl_t`` at every token plus the sequence advantage at the last one, and a token's advantage is its
    reward-to-go: the KL of the tokens after it counts against it, that before it does not.
    """
    m = mask.to(seq_adv.dtype)
    if kl is None:
        return seq_adv[:, None] * m
    rewards = -kl_coef * kl * m
    lengths = mask.long().sum(-1)
    last = (lengths - 1).clamp(min=0)
    has = (lengths > 0).to(rewards.dtype)
    rewards = rewards.scatter_add(-1, last[:, None], (seq_adv.to(rewards.dtype) * has)[:, None])
    return reward_to_go(rewards, mask)


# --- the loss ----------------------------------------------------------------------------------------


@dataclass
class PGLossStats:
    clip_frac: torch.Tensor  # share of tokens whose ratio was clipped
    approx_kl: torch.Tensor  # k3 estimate of KL(old || new): how far this update moved
    ratio_mean: torch.Tensor


def clipped_token_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
) -> tuple[torch.Tensor, PGLossStats]:
    """Per-token clipped surrogate ``max(-A * ratio, -A * clip(ratio, 1 +- eps))``, ``(B, T)``, 0 on
    padding; reduced by :func:`aggregate` (PPO's ``ppo_policy_loss`` takes the token mean directly)."""
    m = mask.to(logprobs.dtype)
    log_ratio = (logprobs - old_logprobs) * m
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    per_token = torch.maximum(unclipped, clipped) * m
    with torch.no_grad():
        stats = PGLossStats(
            clip_frac=masked_mean((clipped > unclipped).to(logprobs.dtype), mask),
            approx_kl=masked_mean((ratio - 1.0) - log_ratio, mask),
            ratio_mean=masked_mean(ratio, mask),
        )
    return per_token, stats


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference), ``exp(q - p) - (q - p) - 1`` (>= 0), with
    gradient through ``logprobs``: GRPO's KL loss term. 0 on padding."""
    return kl_penalty(logprobs, ref_logprobs, "k3") * mask.to(logprobs.dtype)


def aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, mode: str, max_len: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(numerator, denominator)`` of a per-token loss; the loss is their ratio over the whole minibatch
    (a trainer sums both over micro-batches and processes before dividing, so splitting changes nothing).

    * ``token_mean``: every token of the minibatch weighs the same (sum / tokens). The default: a long
      response's tokens are not down-weighted (``seq_mean`` favours short right answers and long wrong
      ones, DAPO's and Dr. GRPO's point), and it is PPO's reduction here, so the two compare like for like.
    * ``seq_mean``: mean over responses of each response's token mean (the original GRPO).
    * ``seq_sum``: each response's token sum divided by the constant ``max_len``
      (max_new_tokens), mean over responses: Dr. GRPO's length-unbiased reduction.
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
