"""Anthropic HH-RLHF (or any preference file) as a task: human preferences, no gold judge."""
