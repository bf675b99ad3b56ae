"""Critic-free policy optimisation (GRPO, Dr. GRPO, RLOO, REINFORCE++, the reference baseline)."""
