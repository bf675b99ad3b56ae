"""A user's own files as a task: prompts, SFT data and preferences (or people to annotate)."""
