"""The demo world (v2): offline prompt families whose correctness is visible in the prompt, a gold judge,
SFT data with systematic flaws, and simulated annotators (see docs/demo_world.md)."""

from chatglm_rlhf.tasks.demo.annotators import AnnotatorPool, SimulatedAnnotator
from chatglm_rlhf.tasks.demo.demonstrations import (
    FLAWS,
    RESPONSE_MODES,
    Demonstration,
    make_sft_data,
    response_for,
)
from chatglm_rlhf.tasks.demo.judge import GoldJudge, GoldReward, GoldScore
from chatglm_rlhf.tasks.demo.world import CATEGORIES, RL_CATEGORIES, SPLITS, DemoWorld

__all__ = [
    "CATEGORIES", "FLAWS", "RESPONSE_MODES", "RL_CATEGORIES", "SPLITS", "AnnotatorPool", "DemoWorld",
    "Demonstration", "GoldJudge", "GoldReward", "GoldScore", "SimulatedAnnotator", "make_sft_data", "response_for",
]  # fmt: skip
