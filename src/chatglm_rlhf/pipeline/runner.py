"""A resumable run made of named stages.

Each stage writes its outputs under the run folder and, when it has finished, a marker
``DIR/stages/NAME.done.json`` holding the metrics it reported and what it ran with (its settings and a
fingerprint of them, of its input files and of the stage before it: :mod:`pipeline.fingerprint`).
Re-running skips a stage whose marker matches, so a run killed mid-way resumes where it stopped; a
stage whose settings or inputs changed is redone with every stage after it, and the run says which
settings changed. ``from_stage`` redoes a stage and every stage after it. ``DIR/metrics.json`` always holds every stage's metrics. A
stage may pause the run after it (``Stage.pause``), e.g. until people have annotated its output.

A stage that was killed part-way leaves ``stages/NAME.started.json`` (its fingerprint) and no marker. When
the rerun finds the same fingerprint there, :func:`resuming` is true while the stage runs, and trainers
continue from their last checkpoint instead of starting over (docs/faults.md).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatglm_rlhf.errors import CorruptFileError, UserError
from chatglm_rlhf.pipeline import fingerprint as F
from chatglm_rlhf.utils.training import save_json


@dataclass
class Stage:
    name: str
    run: Callable[[Path], dict[str, Any]]  # run(run_dir) -> metrics (a JSON-able dict)
    metrics_key: str | None = None  # where its metrics go in metrics.json (default: name)
    # After the stage (run or skipped): a message means "stop here for now" (e.g. until people have
    # annotated its output); the run ends cleanly and a later run resumes after the stage.
    pause: Callable[[Path], str | None] | None = None
    settings: Any = None  # what the stage runs with, as JSON types (see fingerprint.canonical)


def marker(run_dir: Path, name: str) -> Path:
    return run_dir / "stages" / f"{name}.done.json"


def started_marker(run_dir: Path, name: str) -> Path:
    return run_dir / "stages" / f"{name}.started.json"


_RESUMING: ContextVar[bool] = ContextVar("resuming", default=False)


def resuming() -> bool:
    """True while a stage runs again with the settings it was killed with: its trainers may resume."""
    return _RESUMING.get()


def run_stages(run_dir: str | Path, stages: list[Stage], from_stage: str | None = None,
               until: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Run (or skip, when done) every stage in order; ``until`` stops after that stage, as a pause does
    (a sweep shares one run's early stages, a user looks at the RM before paying for RL)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in stages]
    for flag, name in (("--from", from_stage), ("--until", until)):
        if name is not None and name not in names:
            raise UserError(f"{flag} {name}: unknown stage (stages: {', '.join(names)})")
    redo = names.index(from_stage) if from_stage else len(names)
    metrics = _read_metrics(run_dir)
    upstream = legacy_upstream = ""
    for i, stage in enumerate(stages):
        key = stage.metrics_key or stage.name
        done = marker(run_dir, stage.name)
        inputs = F.external_inputs(stage.settings, run_dir)
        settings = F.in_run(stage.settings, run_dir)  # a moved run folder still matches its markers
        fp = F.fingerprint(settings, inputs, upstream)
        # Markers written before paths were made run-relative hold this one: still a match.
        legacy = F.fingerprint(stage.settings, inputs, legacy_upstream)
        upstream, legacy_upstream = fp, legacy
        if i >= redo:
            done.unlink(missing_ok=True)
            started_marker(run_dir, stage.name).unlink(missing_ok=True)  # --from: start that stage afresh
        if done.exists() and i < redo:
            info = read_marker(done, stage.name)
            if "fingerprint" in info and info["fingerprint"] not in (fp, legacy):
                redo = i
                done.unlink()
                print(f"[{stage.name}] changed since it ran ({_why(info, settings, inputs)}): redoing "
                      f"it and every later stage")  # fmt: skip
            elif info.get("fingerprint") == legacy != fp:
                save_json(done, {**info, "fingerprint": fp, "settings": settings})
        if done.exists():
            info = read_marker(done, stage.name)
            result, seconds = info["metrics"], info["seconds"]
            note = "" if "fingerprint" in info else " (its marker predates settings checks: not compared)"
            print(f"[{stage.name}] already done, skipping{note} (use --from {stage.name} to redo it)")
        else:
            print(f"[{stage.name}] running")
            t0 = time.time()
            result = _run(stage, run_dir, fp, names)
            seconds = round(time.time() - t0, 1)
            save_json(done, {"stage": stage.name, "seconds": seconds, "metrics": result, "fingerprint": fp,
                             "settings": settings, "inputs": inputs})  # fmt: skip
            started_marker(run_dir, stage.name).unlink(missing_ok=True)
            print(f"[{stage.name}] done in {seconds:.1f}s")
        metrics[key] = {**metrics.get(key, {}), **result} if stage.metrics_key else result
        metrics.setdefault("timing", {})[stage.name] = seconds
        save_json(run_dir / "metrics.json", metrics)
        message = stage.pause(run_dir) if stage.pause else None
        if message is None and stage.name == until:
            message = "stopped here (--until); run again without --until to go on"
        if message:
            print(f"[{stage.name}] {message}")
            metrics["paused_after"] = stage.name
            return metrics
    metrics.pop("paused_after", None)
    save_json(run_dir / "metrics.json", metrics)
    return metrics


def trainer_config(cfg: Any, out_dir: Path) -> Any:
    """A trainer's config for a stage: ``resume=true`` when the stage resumes after a kill; else the
    old checkpoints in ``out_dir`` are removed, so that a later resume never picks one made with other
    settings."""
    if not dataclasses.is_dataclass(cfg) or not hasattr(cfg, "resume"):
        return cfg
    if resuming():
        return dataclasses.replace(cfg, resume=True)
    shutil.rmtree(Path(out_dir) / "checkpoints", ignore_errors=True)
    return cfg


def _run(stage: Stage, run_dir: Path, fp: str, names: list[str]) -> dict[str, Any]:
    """Run one stage, recording that it started (with its fingerprint) so a rerun after a kill resumes
    it; a corrupt file it reads gets the stage to redo in its message."""
    started = started_marker(run_dir, stage.name)
    try:
        again = json.loads(started.read_text()).get("fingerprint") == fp
    except (OSError, ValueError, AttributeError):
        again = False  # none (a first run), or unreadable: start the stage afresh
    if again:
        print(f"[{stage.name}] it was interrupted: resuming from its last checkpoint where it has one")
    save_json(started, {"stage": stage.name, "fingerprint": fp})
    token = _RESUMING.set(again)
    try:
        return stage.run(run_dir)
    except CorruptFileError as e:
        e.hint = _redo_hint(Path(e.path), run_dir, names) or e.hint
        raise
    finally:
        _RESUMING.reset(token)


def _redo_hint(path: Path, run_dir: Path, names: list[str]) -> str:
    """``models/<stage>/...`` was written by that stage: say so. Else the generic hint stays."""
    try:
        parts = path.resolve().relative_to(run_dir.resolve()).parts
    except ValueError:
        return ""
    if len(parts) >= 2 and parts[0] == "models" and parts[1] in names:
        if "checkpoints" in parts:  # the Checkpointer's own hint (resume from the one before) is better
            return ""
        return f"rerun with --from {parts[1]} to redo the stage that wrote it"
    return ""


def _why(info: dict, settings: Any, inputs: dict[str, str]) -> str:
    """Which settings or input files differ from the marker's, in a few words."""
    changed = F.changes(info.get("settings"), settings)
    old_inputs = info.get("inputs") or {}
    changed += [
        f"{p} changed" for p in sorted(set(inputs) | set(old_inputs)) if inputs.get(p) != old_inputs.get(p)
    ]
    if not changed:
        return "an earlier stage was redone"
    return "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")


def read_marker(path: Path, stage: str) -> dict[str, Any]:
    """A stage's marker; a truncated or corrupt one is a one-line error saying how to redo the stage (never
    a silent redo: the stage's outputs may be fine, and what follows it is finished work)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict) or not {"metrics", "seconds"} <= info.keys():
            raise ValueError("not a stage marker (no metrics / seconds)")
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
        raise UserError(
            f"{path}: unreadable stage marker ({e}); to redo {stage} and every later stage, delete the file "
            f"or rerun with --from {stage}"
        ) from None
    return info


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json as the last run left it. A corrupt one (a run killed while writing it) is rebuilt from
    the stage markers, which hold every finished stage's metrics: nothing is redone or lost."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(metrics, dict):
            return metrics
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    print(f"[run] {path} is unreadable: rebuilding it from the stage markers (stages/*.done.json)")
    return {}
