"""Pieces every trainer shares: seeding, the accelerator, NaN guards, checkpoints, metric logs.

Trainers (SFT, RM, PPO, DPO) only orchestrate: the loss math lives in small pure functions, and the
bookkeeping lives here so that each trainer stays short and they all behave the same way (stop on a
non-finite loss naming the step; resume from the last checkpoint with optimizer, RNG and step).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import shutil
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from chatglm_rlhf.errors import CorruptFileError, TrainingError
from chatglm_rlhf.utils.faults import maybe_kill
from chatglm_rlhf.utils.files import atomic_write_text, check_model_files
from chatglm_rlhf.utils.train_config import require_reporter


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_accelerator(mixed_precision: str = "auto", grad_accum: int = 1, cpu: bool = False):
    """An ``accelerate.Accelerator`` with per-device defaults.

    ``mixed_precision="auto"``: bf16 autocast on a CUDA device that supports it, none on CPU (bf16
    autocast is slower than fp32 on most CPUs, so it is never the CPU default).
    """
    from accelerate import Accelerator

    mixed_precision = resolved_precision(mixed_precision, cpu)
    return Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum, cpu=cpu)


def resolved_precision(mixed_precision: str, cpu: bool) -> str:
    """``auto``: bf16 on a CUDA device that supports it, else none; any other value as given."""
    if mixed_precision != "auto":
        return mixed_precision
    use_bf16 = (not cpu) and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16" if use_bf16 else "no"


def check_finite(loss: torch.Tensor | float, step: int, what: str = "loss") -> None:
    """Stop training with a clear error when the loss is NaN or inf (it never recovers by itself)."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        raise TrainingError(
            f"{what} is {value} at step {step}: training stopped. Lower the learning rate, check the data "
            "for empty responses, or use fp32; resume=true continues from the last checkpoint."
        )


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int):
    """Linear warmup then constant / linear / cosine decay, as a ``LambdaLR`` multiplier."""

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant" or total_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def train_metrics(metrics: dict[str, Any], lr: float | None = None) -> dict[str, Any]:
    """The logged names of an epoch trainer's step metrics (SFT, RM, DPO): ``train/<name>``, ``train/lr``.

    Held-out metrics are ``eval/<name>``. PPO keeps its own per-step names (``reward/raw``, ``kl``,
    ``loss/policy``, ...), which the pipeline's report reads.
    """
    row = {f"train/{k}": v for k, v in metrics.items()}
    if lr is not None:
        row["train/lr"] = lr
    return row


class MetricsLog:
    """Append-only JSONL of per-step metrics, plus TensorBoard or wandb (offline) when asked; rank 0 only.

    ``report_to``: ``none`` (JSONL only), ``tensorboard`` (events in ``DIR/tb``; a note when tensorboard
    is not installed) or ``wandb`` (an offline run in ``DIR/wandb`` unless ``WANDB_MODE`` says otherwise;
    a :class:`UserError` when wandb is not installed).
    """

    def __init__(
        self,
        path: str | Path,
        enabled: bool = True,
        tensorboard: bool = False,
        report_to: str = "none",
        config: dict[str, Any] | None = None,
    ):
        self.path = Path(path)
        self.enabled = enabled
        self.tb = None
        self.wandb = None
        if report_to == "wandb":
            require_reporter("wandb")  # on every rank: a missing package fails everywhere alike
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard or report_to == "tensorboard":
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tb = SummaryWriter(str(self.path.parent / "tb"))
                except ImportError:  # tensorboard is optional: say so instead of silently logging less
                    print(
                        "tensorboard is not installed (pip install 'chatglm-rlhf[tensorboard]'); logging JSONL only"
                    )
                    self.tb = None
            if report_to == "wandb":
                self.wandb = _wandb_run(self.path.parent, config)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, "time": time.time(), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        maybe_kill(self.path, step)  # the fault suite's crash point; a no-op unless its variable is set
        scalars = {k: _plain(v) for k, v in metrics.items() if isinstance(_plain(v), (int, float))}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def close(self) -> None:
        """Flush and close TensorBoard / wandb (the JSONL is written line by line)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None

    def truncate_after(self, step: int) -> None:
        """On resume, forget rows logged after the checkpoint so the log has no duplicates."""
        if not (self.enabled and self.path.exists()):
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def _wandb_run(output_dir: Path, config: dict[str, Any] | None):
    """An offline wandb run logging to ``output_dir/wandb`` (``WANDB_MODE`` set by the user wins)."""
    import wandb

    os.environ.setdefault("WANDB_MODE", "offline")
    log_dir = output_dir / "wandb"
    log_dir.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=os.environ.get("WANDB_PROJECT", "chatglm-rlhf"),
        name=output_dir.name,
        dir=str(log_dir),
        mode=os.environ["WANDB_MODE"],
        config=config or {},
    )


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metric log. A last line cut short (killed, or a full disk, while appending) is left
    out: its step is redone by the resumed run, which logs it again."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:  # torn in the middle: not a crash's trace, a damaged file
                raise CorruptFileError(path, f"{path}:{i + 1}: not JSON", "delete the file") from None
    return rows


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


class Checkpointer:
    """``output_dir/checkpoints/step-N``: accelerate state (model, optimizer, scheduler, RNG) + step.

    Keeps the newest ``keep`` checkpoints. ``latest()`` is what ``resume=true`` loads. ``sharded``:
    modules accelerate did not prepare (PPO's own FSDP2), saved and loaded by that object's
    ``save(path)`` / ``load(path)`` (every rank its shards) next to accelerate's state.
    """

    def __init__(self, output_dir: str | Path, accelerator, keep: int = 2, sharded: Any = None):
        self.root = Path(output_dir) / "checkpoints"
        self.acc = accelerator
        self.keep = keep
        self.sharded = sharded

    def save(self, step: int, extra: dict[str, Any] | None = None) -> Path:
        path = self.root / f"step-{step}"
        self.acc.save_state(str(path))
        if self.sharded is not None:  # before trainer_state.json, which marks the checkpoint complete
            self.sharded.save(path)
        if self.acc.is_main_process:
            state = {"step": step, "python_random": _py_random_state(), **(extra or {})}
            atomic_write_text(path / "trainer_state.json", json.dumps(state))
            self._prune()
        self.acc.wait_for_everyone()
        return path

    def latest(self) -> Path | None:
        if not self.root.exists():
            return None
        done = [p for p in self.root.glob("step-*") if (p / "trainer_state.json").exists()]
        return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)

    def load(self, path: Path) -> dict[str, Any]:
        """Load a checkpoint; a truncated or unreadable one is a one-line error saying what to do (never
        a silent fresh start, which would throw away the steps already trained)."""
        try:
            state = json.loads((path / "trainer_state.json").read_text())
            check_model_files(path)
            self._check_rng_states(path)
            self.acc.load_state(str(path))
            if self.sharded is not None:
                self.sharded.load(path)
            random.setstate(_py_random_from_json(state.pop("python_random")))
        except (CorruptFileError, *UNREADABLE) as e:
            older = [
                p.name for p in self.root.glob("step-*") if p != path and (p / "trainer_state.json").exists()
            ]
            instead = f"delete it to resume from {max(older, key=lambda n: int(n.split('-')[1]))}" if older else (
                "delete it and run without resume=true (starts over)")  # fmt: skip
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CorruptFileError(path, f"{path}: unreadable checkpoint ({detail})", instead) from None
        return state

    def _check_rng_states(self, path: Path) -> None:
        """Read this rank's RNG states first: accelerate's load_state skips an unreadable file with an
        info log, and the resumed run would then sample differently from the run it continues."""
        rng = path / f"random_states_{self.acc.process_index}.pkl"
        if rng.exists():
            from accelerate.utils import load

            load(rng)

    def _prune(self) -> None:
        steps = sorted(self.root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
        for old in steps[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)


# What loading a truncated or garbled file raises: torch.load (pickle, zip), safetensors, json.
UNREADABLE = (OSError, ValueError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError, SafetensorError)


def _py_random_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _py_random_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def save_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dataclass(obj):
        obj = asdict(obj)
    atomic_write_text(path, json.dumps(obj, indent=2, default=_plain))


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of one epoch: a function of (seed, epoch) alone, so a resumed run sees the same."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(n))
    rng.shuffle(order)
    return order


def warmup_schedule(opt, schedule: str, warmup_ratio: float, total: int):
    """``LambdaLR`` with linear warmup over ``warmup_ratio * total`` steps, then ``schedule``."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(schedule, int(warmup_ratio * total), total))


def open_run(
    output_dir: str | Path,
    accelerator,
    resume: bool,
    tensorboard: bool = False,
    report_to: str = "none",
    config: Any = None,
    sharded: Any = None,
) -> tuple[Checkpointer, MetricsLog, dict[str, Any]]:
    """The checkpointer and metric log of ``output_dir``, and the state to start from.

    With ``resume`` and a checkpoint present, the last checkpoint is loaded (model, optimizer, scheduler,
    RNG) and its trainer state returned; otherwise ``{"step": 0}``. The metric log is cut back to that
    step, so neither a resumed run nor a fresh run in an old folder leaves stale or duplicate rows.
    ``report_to`` (a trainer's config key) adds TensorBoard events or an offline wandb run
    (:class:`MetricsLog`); ``config`` (the trainer's config) is recorded in the wandb run; ``sharded``
    goes to the :class:`Checkpointer`.
    """
    ckpt = Checkpointer(output_dir, accelerator, sharded=sharded)
    if is_dataclass(config):
        config = asdict(config)
    log = MetricsLog(
        Path(output_dir) / "metrics.jsonl",
        enabled=accelerator.is_main_process,
        tensorboard=tensorboard,
        report_to=report_to,
        config=config,
    )
    state: dict[str, Any] = {"step": 0}
    if resume and (last := ckpt.latest()) is not None:
        state = ckpt.load(last)
        accelerator.print(f"resumed from {last} at step {state['step']}")
    log.truncate_after(state["step"])
    return ckpt, log, state


def rss_mb() -> float:
    """This process's resident memory now, in MiB, from Linux's ``/proc`` (NaN without a VmRSS line).
    Benchmarks compare it with the peak (``ru_maxrss``) so imports are not counted as a stage's memory."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")
