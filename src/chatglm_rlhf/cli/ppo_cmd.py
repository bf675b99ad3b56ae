"""``chatglm-rlhf ppo``: PPO (the gae estimator, a critic) from the SFT model against a reward model."""

from __future__ import annotations

from chatglm_rlhf.cli.online_cmd import register_online
from chatglm_rlhf.policy.online.config import PPOConfig


def register(sub) -> None:
    register_online(sub, "ppo", PPOConfig,
                    "PPO against a reward model, with the paper's reference baseline, KL penalty and ptx SFT "
                    "loss (any estimator= of the online loop runs here too)")  # fmt: skip
