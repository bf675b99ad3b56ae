"""``python -m chatglm_rlhf.collect.annotate ...``: the annotate commands without the main CLI."""

from __future__ import annotations

import sys

from chatglm_rlhf.collect.annotate.cli import main

if __name__ == "__main__":
    sys.exit(main())
