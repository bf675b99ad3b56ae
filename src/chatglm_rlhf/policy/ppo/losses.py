"""PPO math as small pure functions on tensors (each unit-tested on hand-computed numbers).

Layout used throughout: per-token tensors are ``(B, T)`` over the *response* tokens only, right-padded,
with ``mask`` (1 = a real response token, 0 = padding after it ended). Position ``t`` holds the action
(the token sampled at response step ``t``), its log-prob, the value of the state before it, and its
reward. Padding never contributes to a mean and never leaks into GAE.

The reward follows the ChatGLM-RLHF paper: the reward model's score at the last response token, minus
the score of the SFT model's own answer to the same prompt (the *reference baseline*, which replaces
reward normalisation), plus a per-token KL penalty to the frozen reference policy.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Literal

import torch

KLEstimator = Literal["k1", "k3"]
KL_ESTIMATORS = typing.get_args(KLEstimator)  # one list: the config key and the estimator agree


# --- masked statistics -------------------------------------------------------------------------------


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


# --- advantages --------------------------------------------------------------------------------------


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens; returns ``(advantages, returns)``.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, where the
    value and advantage of a padded position count as 0: the episode ends at a row's last real token
    (the terminal state has value 0), so whatever the padding holds never leaks backwards. Returns are
    ``A + V`` (the value targets); both outputs are 0 on padding.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    T = rewards.shape[-1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(T)):
        if t + 1 < T:
            next_value, next_mask = values[..., t + 1], mask[..., t + 1]
        else:
            next_value, next_mask = torch.zeros_like(last), torch.zeros_like(last)
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        last = delta + gamma * lam * next_mask * last
        adv[..., t] = last
    adv = adv * mask
    return adv, (adv + values) * mask


# --- losses ------------------------------------------------------------------------------------------


@dataclass
class PolicyLossStats:
    clip_frac: torch.Tensor  # share of tokens whose ratio was clipped (the clipped branch was active)
    approx_kl: torch.Tensor  # k3 estimate of KL(old || new) over the minibatch: how far this epoch moved
    ratio_mean: torch.Tensor


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
) -> tuple[torch.Tensor, PolicyLossStats]:
    """Clipped surrogate: ``mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))`` over the mask."""
    log_ratio = (logprobs - old_logprobs) * mask.to(logprobs.dtype)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = PolicyLossStats(
            clip_frac=masked_mean((clipped > unclipped).to(logprobs.dtype), mask),
            approx_kl=masked_mean((ratio - 1.0) - log_ratio, mask),
            ratio_mean=masked_mean(ratio, mask),
        )
    return loss, stats


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float | None = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``0.5 * mean(max((V - R)^2, (clip(V, V_old +- eps) - R)^2))``; returns ``(loss, clip_frac)``.

    ``clip_range_value=None`` (or <= 0) gives the plain squared error.
    """
    err = (values - returns) ** 2
    if clip_range_value is None or clip_range_value <= 0:
        return 0.5 * masked_mean(err, mask), torch.zeros((), dtype=values.dtype)
    v_clip = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    err_clip = (v_clip - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clip), mask)
    clip_frac = masked_mean((err_clip > err).to(values.dtype), mask).detach()
    return loss, clip_frac


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of the softmax over the last dim: ``logsumexp(z) - sum(p * z)``."""
    logits = logits.float()
    p = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(-1)


def actor_loss(
    policy_loss: torch.Tensor,
    ptx_loss: torch.Tensor | None,
    ptx_coef: float,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> torch.Tensor:
    """``policy_loss + ptx_coef * ptx_loss - entropy_coef * entropy``: the actor's whole objective.

    The ptx term is the SFT next-token loss on SFT data (the paper's guard against forgetting); it is
    added to the PPO loss, so one backward pass gives both gradients.
    """
    loss = policy_loss
    if ptx_loss is not None and ptx_coef:
        loss = loss + ptx_coef * ptx_loss
    if entropy is not None and entropy_coef:
        loss = loss - entropy_coef * entropy
    return loss


# --- rewards -----------------------------------------------------------------------------------------


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


def reference_baseline_reward(scores: torch.Tensor, ref_scores: torch.Tensor) -> torch.Tensor:
    """The paper's reward ``r(x, y) - r(x, y_ref)``: the score relative to the SFT model's own answer.

    Subtracting a per-prompt baseline removes the reward model's prompt-dependent offset (some prompts
    score high whatever the answer), which is what makes raw rewards noisy across batches.
    """
    return scores - ref_scores


def truncation_penalty(scores: torch.Tensor, finished: torch.Tensor, penalty: float) -> torch.Tensor:
    """Subtract ``penalty`` from the score of every response cut at max_new_tokens (no eos)."""
    return scores - penalty * (~finished.bool()).to(scores.dtype)


def clip_rewards(scores: torch.Tensor, clip: float) -> torch.Tensor:
    """Clamp scores into ``[-clip, clip]`` (``clip <= 0`` leaves them alone)."""
    return scores if clip <= 0 else scores.clamp(-clip, clip)


def shape_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    estimator: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards ``-kl_coef * KL_t``, plus the sequence score at each row's last real token.

    Returns ``(rewards, kl)``, both ``(B, T)`` and 0 on padding. A row with no response token gets no
    reward at all (there is no action to credit).
    """
    mask_f = mask.to(logprobs.dtype)
    kl = kl_penalty(logprobs, ref_logprobs, estimator) * mask_f
    rewards = -kl_coef * kl
    lengths = mask.long().sum(-1)
    last = (lengths - 1).clamp(min=0)
    has = (lengths > 0).to(rewards.dtype)
    bonus = torch.zeros_like(rewards).scatter(-1, last[:, None], (scores.to(rewards.dtype) * has)[:, None])
    return rewards + bonus, kl


# --- controllers and running statistics ---------------------------------------------------------------


class FixedKLController:
    """A constant KL coefficient (same interface as the adaptive one)."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. (2019): move beta so the observed KL tracks ``target``.

    ``beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon)``: proportional control
    with the error clipped so one noisy batch cannot swing beta far.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError("adaptive KL needs target > 0 and horizon > 0")
        super().__init__(init_kl_coef)
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


class RunningMoments:
    """Running mean and std of every score seen so far (Chan et al.'s parallel update).

    Used only for the no-baseline ablation's optional reward normalisation; with the paper's reference
    baseline it is not needed.
    """

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().double().flatten()
        n = x.numel()
        if n == 0:
            return
        b_mean, b_var = float(x.mean()), float(x.var(unbiased=False))
        total = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def normalize(self, x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        return (x - self.mean) / (self.std + eps)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), int(state["count"])
