"""PPO: settings (config), loss math (losses), actor/critic/reference roles (models), rollouts and the prompt filter (rollout), the trainer and its entry points (stage)."""
