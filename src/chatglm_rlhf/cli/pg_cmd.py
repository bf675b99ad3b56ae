"""``chatglm-rlhf pg``: critic-free online RL (``estimator=grpo|dr_grpo|rloo|reinforce_pp|ref_baseline|remax``)."""

from __future__ import annotations

from chatglm_rlhf.cli.online_cmd import register_online
from chatglm_rlhf.policy.online.config import PGConfig


def register(sub) -> None:
    register_online(sub, "pg", PGConfig,
                    "critic-free policy optimisation against a reward model: GRPO, Dr. GRPO, RLOO, REINFORCE++, "
                    "ReMax or REINFORCE with the paper's reference baseline (estimator=...), with KL, ptx and "
                    "the prompt filter")  # fmt: skip
