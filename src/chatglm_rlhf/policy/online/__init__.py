"""Online RL: one loop (loop.py), many advantage estimators (estimators.py)."""
