"""Helpers of the multi-process CPU tests: a launcher with a hard timeout, and result readers.

The 2-process runs use torch's own launcher (``python -m torch.distributed.run``, the same thing as
``torchrun``) or ``accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml``, with the gloo
backend on CPU. Each run has a timeout: a hang (a rank waiting in a collective the other never reaches)
fails the test with both ranks' output instead of blocking CI.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("audited_main.py")
CPU_2PROC = REPO / "recipes" / "accelerate" / "cpu_2proc.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    nproc: int, cli: list[str], watch: Path, audit: Path, timeout: float = 240, via: str = "torchrun"
) -> dict:
    """Run ``chatglm-rlhf <cli>`` in ``nproc`` CPU processes; return each rank's audit report + output.

    ``via="accelerate"`` goes through ``accelerate launch`` with the repo's ``cpu_2proc.yaml`` (which
    hands the processes to torchrun); ``via="torchrun"`` calls torch's launcher directly.
    """
    port = str(free_port())
    if via == "accelerate":
        head = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_2PROC)]
        head += ["--num_processes", str(nproc), "--main_process_port", port]
    else:
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
        head += ["--master_addr", "127.0.0.1", "--master_port", port, "--max_restarts", "0"]
    cmd = [*head, str(WORKER), str(watch), str(audit), "--", *cli]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its workers: the group we started
        out, _ = proc.communicate()
        pytest.fail(f"{nproc}-process run timed out after {timeout}s (a hang?)\n{out[-4000:]}")
    if proc.returncode != 0:
        pytest.fail(f"{nproc}-process run failed (exit {proc.returncode})\n{out[-6000:]}")
    reports = {}
    for r in range(nproc):
        path = audit / f"rank{r}.json"
        assert path.exists(), f"rank {r} wrote no audit report\n{out[-4000:]}"
        reports[r] = json.loads(path.read_text())
    return {"reports": reports, "output": out}


def in_process(cli: list[str]) -> None:
    """The 1-process reference run, in this process (same code path as a 1-process launch)."""
    from chatglm_rlhf.cli.main import main

    assert main(cli) == 0


def load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def max_param_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
