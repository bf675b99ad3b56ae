"""Worker for the multi-process tests: run the ``chatglm-rlhf`` CLI, recording which files this rank writes.

Launched by torchrun / accelerate launch as ``audited_main.py WATCH_DIR AUDIT_DIR -- <cli args>``. A
``sys.addaudithook`` records every open-for-writing, rename and delete under ``WATCH_DIR`` (Python-level
I/O: JSON, JSONL, tokenizer and config files); at exit the rank writes ``AUDIT_DIR/rank<R>.json`` with
those paths and the CLI's exit code. (torch.save and safetensors write from C++/Rust and are not seen;
the tests check those outputs by their content instead.)

It also records, per rank, every ``HFGenerator.generate`` call (prompts, samples per prompt, greedy,
whether the model's weights were whole), so a test can tell which rank generated what, a checksum of
every module ``Accelerator.prepare`` returned, taken at exit, so a test can check that the ranks'
replicas ended identical, and how PPO's trained modules were sharded at their first update.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _is_write(args: tuple) -> bool:
    _, mode, flags = (list(args) + [None, None, None])[:3]
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def _record_sharding() -> list[dict]:
    """Per trained module as PPO's first step starts: its class, DDP or FSDP2, DTensor parameters, and
    this rank's share of its elements (a test can tell real sharding from a silent DDP fallback). At the
    step's start, not in the update: FSDP2 keeps its root unit whole from a forward to its backward."""
    import torch
    from torch.distributed.fsdp import FSDPModule

    from chatglm_rlhf.policy.online.loop import OnlineTrainer
    from chatglm_rlhf.utils.fsdp import is_sharded, sharded_fraction

    seen: list[dict] = []
    step = OnlineTrainer.step

    def recording_step(self, *args, **kwargs):
        if not seen:
            for mod in self.models.prepared or self.models.trainable:
                params = list(mod.parameters())
                seen.append({
                    "type": type(mod).__name__,
                    "fsdp_module": isinstance(mod, FSDPModule),
                    "fsdp_units": sum(isinstance(m, FSDPModule) for m in mod.modules()),
                    "ddp": isinstance(mod, torch.nn.parallel.DistributedDataParallel),
                    "dtensor_params": sum(is_sharded(p) for p in params),
                    "params": len(params),
                    "local_fraction": sharded_fraction(mod),
                })  # fmt: skip
        return step(self, *args, **kwargs)

    OnlineTrainer.step = recording_step
    return seen


def _record_generate_and_prepare() -> tuple[list[dict], list]:
    import torch
    from accelerate import Accelerator

    from chatglm_rlhf.models.generation import HFGenerator
    from chatglm_rlhf.utils.fsdp import is_sharded

    calls: list[dict] = []
    prepared: list = []
    generate, prepare = HFGenerator.generate, Accelerator.prepare

    def counting_generate(self, prompts, num_return, settings, seed=None):
        whole = not any(is_sharded(p) for p in self.model.parameters())
        # transformers would decode with synced_gpus (an all-reduce per step) for a flagged module
        synced = any(getattr(m, "_is_fsdp_managed_module", False) for m in self.model.modules())
        calls.append({
            "prompts": len(prompts), "num_return": num_return, "greedy": settings.greedy, "whole": whole,
            "synced": synced,
        })  # fmt: skip
        return generate(self, prompts, num_return, settings, seed)

    def recording_prepare(self, *args, **kwargs):
        out = prepare(self, *args, **kwargs)
        items = out if isinstance(out, tuple) else (out,)
        prepared.extend(m for m in items if isinstance(m, torch.nn.Module))
        return out

    HFGenerator.generate = counting_generate
    Accelerator.prepare = recording_prepare
    return calls, prepared


def _checksum(module) -> float:
    import torch

    with torch.no_grad():
        return float(sum(p.double().sum() + (p.double() ** 2).sum() for p in module.parameters()))


def main() -> int:
    watch, audit_dir, sep, *cli = sys.argv[1:]
    assert sep == "--", "usage: audited_main.py WATCH_DIR AUDIT_DIR -- <cli args>"
    watch_root = str(Path(watch).resolve())
    writes: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, os.PathLike)) and _is_write(args):
            paths = [args[0]]
        elif event in ("os.rename", "os.remove", "shutil.rmtree", "os.rmdir"):
            paths = [a for a in args[:2] if isinstance(a, (str, os.PathLike))]
        else:
            return
        for p in paths:
            full = os.path.abspath(os.fspath(p))
            if full.startswith(watch_root):
                writes.append(f"{event}:{os.path.relpath(full, watch_root)}")

    sys.addaudithook(hook)
    generate_calls, prepared = _record_generate_and_prepare()
    sharding = _record_sharding()
    from chatglm_rlhf.cli.main import main as cli_main

    code = cli_main(cli)
    rank = int(os.environ.get("RANK", "0"))
    report = {"rank": rank, "world": int(os.environ.get("WORLD_SIZE", "1")), "exit": code, "writes": writes}
    report["generate_calls"] = generate_calls
    report["checksums"] = [_checksum(m) for m in prepared]
    report["sharding"] = sharding
    watch_root = "\0"  # the report itself lives outside WATCH_DIR; stop recording anyway
    Path(audit_dir).mkdir(parents=True, exist_ok=True)
    Path(audit_dir, f"rank{rank}.json").write_text(json.dumps(report, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
