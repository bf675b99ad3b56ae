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
