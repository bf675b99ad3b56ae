"""What samplers need from a reward: the :class:`Scorer` protocol, kept free of heavy imports.

PPO's rollouts and DPO's pair building take any object with this one method: the reward model's
:class:`~chatglm_rlhf.reward.scorer.RewardScorer`, the demo world's gold judge, a test fake.
"""

from __future__ import annotations

from typing import Protocol

from chatglm_rlhf.data.schema import DialogueSample


class Scorer(Protocol):
    def score(self, samples: list[DialogueSample], responses: list[str]) -> list[float]:
        """One reward per (sample, response) pair, in order; larger is better."""
        ...
