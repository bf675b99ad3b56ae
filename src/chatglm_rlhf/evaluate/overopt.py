"""Over-optimisation along a PPO run: win rates vs SFT at its checkpoints, and the one to keep.

Gao et al. 2022's picture: the proxy RM's win rate keeps rising with optimisation while an RM that was
never optimised against flattens or falls. The checkpoint to keep is chosen on dev prompts (never the
evaluation prompts) by :func:`choose_checkpoint`; small pure functions, the stage is in
``pipeline/stages/overopt.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

SelectBy = Literal["judges", "proxy", "last"]


def judges_mean(point: dict[str, Any], judges: Sequence[str]) -> float | None:
    """The mean win rate of the judges at one checkpoint (None when any is missing)."""
    vals = [point.get(j) for j in judges]
    return None if not vals or any(v is None for v in vals) else sum(vals) / len(vals)


def choose_checkpoint(points: Sequence[dict[str, Any]], select_by: SelectBy, judges: Sequence[str]) -> int:
    """The index of the checkpoint to keep: ``last``, or the highest dev win rate by the judges' mean
    (``judges``) or by the proxy RM (``proxy``); on a tie the earlier step (less optimisation, less KL
    from SFT, for the same measured gain)."""
    if not points:
        raise ValueError("no checkpoints to choose from")
    if select_by == "last":
        return len(points) - 1

    def score(p: dict[str, Any]) -> float:
        v = judges_mean(p, judges) if select_by == "judges" else p.get("proxy_rm")
        return float("-inf") if v is None else v

    best = 0
    for i, p in enumerate(points):
        if score(p) > score(points[best]):
            best = i
    return best


def ensemble_point(scores: Any, lam: float) -> dict[str, float]:
    """An ensemble's view of one checkpoint's answers, from its ``[M members, N answers]`` scores: the
    mean over answers of the members' mean, of their (population) std and of ``mean − lam·std``."""
    from chatglm_rlhf.reward.ensemble import penalised_reward

    s = scores.float()
    return {"ensemble_mean": s.mean().item(), "ensemble_std": s.std(0, correction=0).mean().item(),
            "ensemble_reward": penalised_reward(s, lam).mean().item()}  # fmt: skip


def gold_drop(points: Sequence[dict[str, Any]], key: str = "gold") -> dict[str, Any]:
    """Where ``key`` (gold's win rate vs SFT) peaked along a curve and how far the last checkpoint fell
    from that peak: the over-optimisation a guard should shrink (0 when the last is the best)."""
    vals = [(p["step"], p[key]) for p in points if p.get(key) is not None]
    if not vals:
        return {"peak_step": None, "peak": None, "final": None, "drop_from_peak": None}
    peak_step, peak = max(vals, key=lambda sv: sv[1])  # max keeps the earliest of equal values
    return {"peak_step": peak_step, "peak": peak, "final": vals[-1][1], "drop_from_peak": peak - vals[-1][1]}
