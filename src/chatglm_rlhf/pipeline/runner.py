"""A resumable run made of named stages.

Each stage writes its outputs under the run folder and, when it has finished, a marker
``DIR/stages/NAME.done.json`` holding the metrics it reported. Re-running skips stages whose marker
exists (their metrics are read back), so a run killed mid-way resumes where it stopped; ``from_stage``
redoes a stage and every stage after it. ``DIR/metrics.json`` always holds every stage's metrics. A
stage may pause the run after it (``Stage.pause``), e.g. until people have annotated its output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.utils.training import save_json


@dataclass
class Stage:
    name: str
    run: Callable[[Path], dict[str, Any]]  # run(run_dir) -> metrics (a JSON-able dict)
    metrics_key: str | None = None  # where its metrics go in metrics.json (default: name)
    # After the stage (run or skipped): a message means "stop here for now" (e.g. until people have
    # annotated its output); the run ends cleanly and a later run resumes after the stage.
    pause: Callable[[Path], str | None] | None = None


def marker(run_dir: Path, name: str) -> Path:
    return run_dir / "stages" / f"{name}.done.json"


def run_stages(run_dir: str | Path, stages: list[Stage], from_stage: str | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in stages]
    if from_stage is not None and from_stage not in names:
        raise UserError(f"--from {from_stage}: unknown stage (stages: {', '.join(names)})")
    redo = names.index(from_stage) if from_stage else len(names)
    metrics = _read_metrics(run_dir)
    for i, stage in enumerate(stages):
        key = stage.metrics_key or stage.name
        done = marker(run_dir, stage.name)
        if i >= redo:
            done.unlink(missing_ok=True)
        if done.exists():
            info = json.loads(done.read_text())
            result, seconds = info["metrics"], info["seconds"]
            print(f"[{stage.name}] already done, skipping (use --from {stage.name} to redo it)")
        else:
            print(f"[{stage.name}] running")
            t0 = time.time()
            result = stage.run(run_dir)
            seconds = round(time.time() - t0, 1)
            save_json(done, {"stage": stage.name, "seconds": seconds, "metrics": result})
            print(f"[{stage.name}] done in {seconds:.1f}s")
        metrics[key] = {**metrics.get(key, {}), **result} if stage.metrics_key else result
        metrics.setdefault("timing", {})[stage.name] = seconds
        save_json(run_dir / "metrics.json", metrics)
        message = stage.pause(run_dir) if stage.pause else None
        if message:
            print(f"[{stage.name}] {message}")
            metrics["paused_after"] = stage.name
            return metrics
    metrics.pop("paused_after", None)
    save_json(run_dir / "metrics.json", metrics)
    return metrics


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}
