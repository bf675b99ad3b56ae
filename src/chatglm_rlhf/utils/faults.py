"""Fault injection for the fault suite (tests/faults): kill this process at a chosen training step.

``CHATGLM_RLHF_KILL_AFTER=<part of a metrics log path>:<step>`` makes the process SIGKILL itself right
after the metric log whose path contains that part has written the row of that step: a crash "between
checkpoints", at an exact and repeatable point, in any trainer (they all log through
``utils.training.MetricsLog``). Unset (always, outside the tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

KILL_ENV = "CHATGLM_RLHF_KILL_AFTER"


def maybe_kill(log_path: Path, step: int) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    part, _, at = spec.rpartition(":")
    if part in str(log_path) and str(step) == at:
        os.kill(os.getpid(), signal.SIGKILL)
