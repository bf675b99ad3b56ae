"""The demo world: offline prompts, a gold judge, mixed-quality SFT data and simulated annotators.

It lets the whole pipeline run on a laptop CPU and every claim be checked against ground truth.
"""

from chatglm_rlhf.tasks.demo.annotators import AnnotatorPool, SimulatedAnnotator
from chatglm_rlhf.tasks.demo.demonstrations import (
    DEFAULT_MIX,
    RESPONSE_MODES,
    Demonstration,
    expected_mode_shares,
    make_sft_data,
    response_for,
)
from chatglm_rlhf.tasks.demo.judge import GoldJudge, GoldReward, GoldScore
from chatglm_rlhf.tasks.demo.world import CATEGORIES, SPLITS, DemoWorld

__all__ = [
    "CATEGORIES",
    "DEFAULT_MIX",
    "RESPONSE_MODES",
    "SPLITS",
    "AnnotatorPool",
    "DemoWorld",
    "Demonstration",
    "GoldJudge",
    "GoldReward",
    "GoldScore",
    "SimulatedAnnotator",
    "expected_mode_shares",
    "make_sft_data",
    "response_for",
]
