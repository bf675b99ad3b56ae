"""What a run prints: one line per stage unless asked for more (``--verbose`` or CHATGLM_RLHF_VERBOSE=1).

Inside :func:`quiet_run` (the pipeline) the libraries' own progress bars (transformers' "Loading weights"
and "Writing model shards"), their info logs and known-harmless FutureWarnings are off, and a data file's
read report is printed only when it rejected something (a rejection is always said). Standalone
commands keep their read reports: there the file is the user's.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

VERBOSE_ENV = "CHATGLM_RLHF_VERBOSE"
_quiet = False


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


# DeepSpeed (installed with the dev extra) logs "Setting accelerator to CPU ..." as a warning when it is
# imported on a machine without a GPU: a filter on its logger, set before the import, keeps its errors.
_DEEPSPEED = logging.getLogger("DeepSpeed")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet() -> bool:
    """True inside :func:`quiet_run` unless verbose."""
    return _quiet and not verbose()


@contextmanager
def quiet_run() -> Iterator[None]:
    global _quiet
    if verbose():
        yield
        return
    from transformers.utils import logging as hf_logging

    bars, level, before = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity(), _quiet
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    ds_filter = _ErrorsOnly()
    _DEEPSPEED.addFilter(ds_filter)
    _quiet = True
    try:
        with warnings.catch_warnings():
            # transformers 5 deprecates a name it still calls itself when gradient checkpointing is on
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        _DEEPSPEED.removeFilter(ds_filter)
        _quiet = before
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
