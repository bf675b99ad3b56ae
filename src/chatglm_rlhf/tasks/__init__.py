"""Tasks: the data worlds a run draws on (the demo world, HH-RLHF, a user's files). Library code imports only ``tasks.base``."""
