"""The last step of every run: who ran (``run`` in metrics.json) and the report page."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def finish(run_dir: Path, metrics: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """metrics.json as the stages wrote it, plus ``run``; then report.html from it (``chatglm-rlhf
    report DIR`` renders the same page again)."""
    from chatglm_rlhf.evaluate.report.page import write_report
    from chatglm_rlhf.utils.training import save_json

    metrics = {**metrics, "run": run}
    save_json(run_dir / "metrics.json", metrics)
    write_report(run_dir, metrics)
    return metrics
