"""What the report's sections share: the metrics, the run folder, artifact overrides, JSONL reading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def get(metrics: dict, key: str, default: Any = None) -> Any:
    """``metrics["a"]["b"]`` for ``"a.b"``, falling back to a flat ``metrics["a.b"]`` (any mix of both)."""
    if key in metrics:
        return metrics[key]
    head, _, rest = key.partition(".")
    if rest and isinstance(metrics.get(head), dict):
        return get(metrics[head], rest, default)
    # a flat prefix: {"filter.balance": {"before": ...}}
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if isinstance(metrics.get(prefix), dict):
            return get(metrics[prefix], ".".join(parts[i:]), default)
    return default


def run_policies(metrics: dict) -> list[str]:
    """Every trained policy of a run, in stage order: ``run.policies`` (the pipeline writes it), else the
    evaluation's policy entries (runs made before it did)."""
    listed = (metrics.get("run") or {}).get("policies")
    if isinstance(listed, list):
        return [str(p) for p in listed]
    ev = metrics.get("evaluate") or {}
    found = [k for k, v in ev.items() if isinstance(v, dict)]  # a dict per policy (examples: a list)
    return found or run_algorithms(metrics)  # older layouts: the eval inside the training summary


def run_algorithms(metrics: dict) -> list[str]:
    """The run's algorithms (``algorithms=``; not the ablations' twins): ``run.algorithms``, else those of
    ppo / dpo that it trained (runs made before the pipeline wrote the list)."""
    listed = (metrics.get("run") or {}).get("algorithms")
    if isinstance(listed, list):
        return [str(p) for p in listed]
    return [p for p in ("ppo", "dpo") if isinstance(metrics.get(p), dict)]


class ReportContext:
    """What the sections share: the metrics, the run folder, artifact overrides, load notes."""

    def __init__(self, run_dir: Path, metrics: dict, artifacts: dict):
        self.run_dir, self.metrics, self.artifacts = run_dir, metrics, artifacts

    def get(self, key: str, default: Any = None) -> Any:
        return get(self.metrics, key, default)

    def path(self, value: Any, base: Path | None = None) -> Path | None:
        if not isinstance(value, (str, Path)) or not str(value):
            return None
        p = Path(value)
        return p if p.is_absolute() else (base or self.run_dir) / p

    def policy(self, name: str) -> dict:
        """A policy's numbers: its evaluation (``evaluate.<name>``) over its training summary."""
        train, ev = self.get(name), self.get(f"evaluate.{name}")
        return {**(train if isinstance(train, dict) else {}), **(ev if isinstance(ev, dict) else {})}

    def policies(self) -> list[str]:
        return run_policies(self.metrics)

    def algorithms(self) -> list[str]:
        return run_algorithms(self.metrics)

    def eval_dict(self, stage: str) -> tuple[dict | None, Path | None]:
        """(eval summary, folder its relative paths resolve against) for a policy (``ppo``, ``pg_rloo``...)."""
        ev = self.policy(stage).get("eval")
        if isinstance(ev, dict):
            return ev, self.run_dir
        p = self.path(ev)
        if p is not None and p.exists():
            return json.loads(p.read_text(encoding="utf-8")), p.parent
        return None, None


def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """Rows of a JSONL file and the number of lines that were not JSON objects."""
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(obj, dict):
            rows.append(obj)
        else:
            bad += 1
    return rows, bad
