"""Loss math for the reward model: small pure functions on tensors (unit-tested on hand-computed numbers).

All functions take per-pair rewards ``r_c`` (chosen) and ``r_r`` (rejected) of shape ``(B,)`` and return
per-pair losses of shape ``(B,)``; :func:`reward_loss` combines them and reduces with optional weights,
so a trainer that accumulates gradients can divide by the weight of the whole optimizer step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bt_loss(
    r_c: torch.Tensor,
    r_r: torch.Tensor,
    margin: torch.Tensor | float | None = None,
    target: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Bradley–Terry loss per pair: ``-log σ(r_c - r_r - margin)``.

    ``margin`` (per pair or scalar, e.g. from label strength) asks the chosen reward to win by at least
    that much (Llama-2-style). ``target`` is the probability that "chosen" is preferred: 1 (default) is
    the usual loss; 0.5 encodes a tie kept as a soft label, giving
    ``-(t·log σ(d) + (1-t)·log σ(-d))``, which is minimised at d = 0. The margin applies only to the
    preferred direction, so it is ignored where ``target < 1``.
    """
    d = r_c.float() - r_r.float()
    if target is None:
        if margin is not None:
            d = d - torch.as_tensor(margin, dtype=d.dtype, device=d.device)
        return -F.logsigmoid(d)
    t = torch.as_tensor(target, dtype=d.dtype, device=d.device).expand_as(d)
    if margin is not None:
        m = torch.as_tensor(margin, dtype=d.dtype, device=d.device).expand_as(d)
        d_win = torch.where(t >= 1.0, d - m, d)
    else:
        d_win = d
    # logsigmoid(-d) = log(1 - σ(d)), stable for large |d|.
    return -(t * F.logsigmoid(d_win) + (1.0 - t) * F.logsigmoid(-d))


def score_regulariser(r_c: torch.Tensor, r_r: torch.Tensor, coef: float) -> torch.Tensor:
    """The paper's regulariser ``λ·(r_c² + r_r²)`` per pair: keeps rewards near zero, so the scale of
    the reward that PPO sees stays stable (BT alone is invariant to a shift of all rewards)."""
    return coef * (r_c.float() ** 2 + r_r.float() ** 2)


def centering_regulariser(r_c: torch.Tensor, r_r: torch.Tensor, coef: float) -> torch.Tensor:
    """TRL-style centering ``λ·(r_c + r_r)²`` per pair: pins the mean reward of a pair to zero while
    leaving the difference (what BT learns) free."""
    return coef * (r_c.float() + r_r.float()) ** 2


def margin_from_strength(strength: torch.Tensor, scale: float) -> torch.Tensor:
    """Label strength (1 = slightly better, 2 = much better; NaN = unknown) → margin ``scale·strength``.

    Unknown strengths get no margin.
    """
    s = torch.nan_to_num(strength.float(), nan=0.0)
    return scale * s


def reward_loss(
    r_c: torch.Tensor,
    r_r: torch.Tensor,
    *,
    margin: torch.Tensor | float | None = None,
    target: torch.Tensor | float | None = None,
    weight: torch.Tensor | None = None,
    reg_coef: float = 0.0,
    center_coef: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """BT loss + regularisers, weighted per pair.

    ``reduction="mean"`` divides by the sum of weights (the number of pairs when unweighted);
    ``"sum"`` returns the weighted sum, for trainers that normalise over a whole accumulated step.
    """
    per_pair = bt_loss(r_c, r_r, margin=margin, target=target)
    if reg_coef:
        per_pair = per_pair + score_regulariser(r_c, r_r, reg_coef)
    if center_coef:
        per_pair = per_pair + centering_regulariser(r_c, r_r, center_coef)
    w = torch.ones_like(per_pair) if weight is None else weight.to(per_pair.dtype)
    total = (per_pair * w).sum()
    if reduction == "sum":
        return total
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return total / w.sum().clamp(min=1e-12)


def pearson(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of two ``(N,)`` tensors (0 when either is constant)."""
    x, y = x.float() - x.float().mean(), y.float() - y.float().mean()
    return (x * y).sum() / (x.norm() * y.norm() + eps)


def length_decorrelation(
    quality: torch.Tensor, length_score: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """ODIN's (Chen et al. 2024) length term: ``|corr(quality, L)| - corr(length_score, L)`` over the
    batch's responses: the quality head is pushed to carry no length, the length head to carry it all."""
    return pearson(quality, lengths).abs() - pearson(length_score, lengths)


def head_orthogonality(w_quality: torch.Tensor, w_length: torch.Tensor) -> torch.Tensor:
    """``|cos(w_q, w_l)|`` of the two heads' weight vectors: they read different directions of the
    representation (ODIN's orthogonality term, made scale-free)."""
    return F.cosine_similarity(w_quality.float().flatten(), w_length.float().flatten(), dim=0).abs()


def pair_accuracy(r_c: torch.Tensor, r_r: torch.Tensor) -> torch.Tensor:
    """Share of pairs where the chosen reward is strictly higher (an exact tie counts as half)."""
    d = r_c.float() - r_r.float()
    return ((d > 0).float() + 0.5 * (d == 0).float()).mean()
