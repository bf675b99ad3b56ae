"""Put one reward on another's scale: a scorer whose scores are multiplied by a fixed factor.

Why: PPO's KL coefficient prices a nat of drift in units of reward. The gold-reward ablation swaps the
RM (std ~1.7 on the SFT model's answers in the demo) for the gold judge's total (in [0, 1], std ~0.4),
so at the same ``kl_coef`` the KL term weighs ~4x more and the "upper bound" moves less than the RM run.
Matching the spreads on the same responses (the SFT model's own answers, where PPO starts) makes the
two runs differ in what the reward ranks, not in how loud it is. A shift is not needed: the reference
baseline and the critic remove a constant.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.reward.protocol import Scorer

log = logging.getLogger(__name__)


def std_ratio(reference: Sequence[float], scores: Sequence[float]) -> float | None:
    """The factor that gives ``scores`` the population std of ``reference`` (same responses, same order);
    None when ``scores`` do not vary (no factor does it)."""
    if len(reference) != len(scores) or len(scores) < 2:
        raise ValueError(
            f"std_ratio needs two equally long lists of >= 2 scores, got {len(reference)}, {len(scores)}"
        )
    spread = statistics.pstdev(scores)
    if spread == 0.0:
        return None
    return statistics.pstdev(reference) / spread


@dataclass
class ScaledScorer:
    """``scorer``'s scores times ``scale``: the :class:`Scorer` protocol, for PPO and DPO alike."""

    scorer: Scorer
    scale: float

    def score(self, samples: list[DialogueSample], responses: list[str]) -> list[float]:
        return [self.scale * s for s in self.scorer.score(samples, responses)]


def calibration_pairs(
    samples: Sequence[DialogueSample], limit: int
) -> tuple[list[DialogueSample], list[str]]:
    """(sample, response) pairs from samples that carry candidate responses, at most ``limit`` of them."""
    pairs = [(s, r) for s in samples for r in s.responses][:limit]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def match_scale(scorer: Scorer, reference: Scorer, samples: Sequence[DialogueSample],
                responses: Sequence[str]) -> tuple[ScaledScorer, dict[str, Any]]:  # fmt: skip
    """``scorer`` rescaled to ``reference``'s std on the given responses, and the numbers behind it.
    A scorer that gives every response the same score keeps scale 1, and the info says so."""
    ref = reference.score(list(samples), list(responses))
    own = scorer.score(list(samples), list(responses))
    ratio = std_ratio(ref, own)
    info = {"scale": 1.0 if ratio is None else ratio, "reference_std": statistics.pstdev(ref),
            "scorer_std": statistics.pstdev(own), "n": len(own)}  # fmt: skip
    if ratio is None:
        info["note"] = "the scorer gave every calibration response the same score: scale left at 1"
        log.warning("reward scale: %s", info["note"])
    return ScaledScorer(scorer, info["scale"]), info
