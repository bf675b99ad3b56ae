"""From a response's score to the reward the estimator sees, and the running state around it.

The sequence reward: the reward model's score, minus a penalty for a response cut at max_new_tokens,
minus the paper's reference baseline ``r(x, y_ref)``, optionally normalised by running moments (the
no-baseline ablation) and clipped. The KL coefficient's controllers (fixed, or adaptive after Ziegler
et al.) and the cross-process whitening of advantages live here too. Pure functions and small state
objects, unit-tested on hand-computed numbers.
"""

from __future__ import annotations

import math

import torch

from chatglm_rlhf.utils.distributed import Ranks


def truncation_penalty(scores: torch.Tensor, finished: torch.Tensor, penalty: float) -> torch.Tensor:
    """Subtract ``penalty`` from the score of every response cut at max_new_tokens (no eos)."""
    return scores - penalty * (~finished.bool()).to(scores.dtype)


def clip_rewards(scores: torch.Tensor, clip: float) -> torch.Tensor:
    """Clamp scores into ``[-clip, clip]`` (``clip <= 0`` leaves them alone)."""
    return scores if clip <= 0 else scores.clamp(-clip, clip)


def reference_baseline_reward(scores: torch.Tensor, ref_scores: torch.Tensor) -> torch.Tensor:
    """The paper's reward ``r(x, y) - r(x, y_ref)``: the score relative to the SFT model's own answer.

    Subtracting a per-prompt baseline removes the reward model's prompt-dependent offset (some prompts
    score high whatever the answer), which is what makes raw rewards noisy across batches.
    """
    return scores - ref_scores


def sequence_rewards(
    raw: torch.Tensor,
    ref: torch.Tensor | None,
    finished: torch.Tensor,
    penalty: float = 0.0,
    clip: float = 0.0,
    moments: RunningMoments | None = None,
    ranks: Ranks | None = None,
) -> torch.Tensor:
    """Raw RM scores -> the sequence reward: truncation penalty, reference baseline (``ref``, per
    response), running normalisation (with ``moments``), clipping.

    The running moments are updated with every rank's scores, so all ranks normalise alike.
    """
    scores = truncation_penalty(raw, finished, penalty) if penalty else raw
    if ref is not None:
        scores = reference_baseline_reward(scores, ref)
    if moments is not None:
        moments.update((ranks or Ranks()).gather(scores).cpu())
        scores = moments.normalize(scores)
    return clip_rewards(scores, clip)


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


def whiten_batch(x: torch.Tensor, mask: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Advantages normalised over the whole batch: :func:`~chatglm_rlhf.policy.losses.whiten` in one
    process, :func:`whiten_across` (every rank's entries) in several."""
    from chatglm_rlhf.policy.losses import whiten

    return whiten(x, mask) if ranks.count == 1 else whiten_across(x, mask, ranks)


def whiten_across(x: torch.Tensor, mask: torch.Tensor, ranks: Ranks, eps: float = 1e-8) -> torch.Tensor:
    """``policy.losses.whiten`` with the mean and (Bessel-corrected) variance of every rank's entries."""
    m = mask.to(x.dtype)
    n = ranks.sum(m.sum())
    mean = ranks.sum((x * m).sum()) / n.clamp(min=1)
    var = ranks.sum(((x - mean) ** 2 * m).sum()) / n.clamp(min=1)
    if n > 1:
        var = var * n / (n - 1)
    return (x - mean) * torch.rsqrt(var + eps) * m
