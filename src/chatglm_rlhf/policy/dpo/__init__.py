"""DPO / IPO / conservative DPO: settings (config), loss math (losses), RM-labelled pairs (pairs), the trainer and its entry points (stage)."""
