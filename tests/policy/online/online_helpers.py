"""Helpers the online-RL tests share."""

import pytest


def train_until_stopped(trainer, stop_at: int) -> None:
    """Train, stopping (KeyboardInterrupt) as step ``stop_at`` (0-based) begins: after the checkpoint
    of the step before it, as a kill between checkpoints would."""
    original = trainer.step

    def step_then_stop(i):
        if i == stop_at:
            raise KeyboardInterrupt
        return original(i)

    trainer.step = step_then_stop
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
