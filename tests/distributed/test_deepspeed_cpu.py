"""DeepSpeed's own engine on CPU: ZeRO-2 and ZeRO-3 step with 2 gloo processes, ZeRO-3 partitions the
parameters, and 2 processes make the update of 1 (the DeepSpeed CPU path the trainers' ZeRO layouts,
docs/scaling.md, would stand on)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed", reason="deepspeed is not installed (pip install -e '.[dev]' installs it)")

from dist_helpers import free_port  # noqa: E402

WORKER = Path(__file__).with_name("deepspeed_worker.py")


def run(stage: int, nproc: int, out: Path) -> list[dict]:
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(free_port()), str(WORKER), str(stage), str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]


# In the default suite: the worker skips DeepSpeed's CPU shared-memory op (compiled with ninja on first
# use, ~1 min on a fresh machine), so nothing is compiled and both stages run on gloo.
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_on_cpu_with_gloo_makes_the_update_of_one_process(stage, tmp_path):
    one = run(stage, 1, tmp_path / "one")[0]
    two = run(stage, 2, tmp_path / "two")
    assert [r["world"] for r in two] == [2, 2]
    assert two[0]["weights"] == pytest.approx(two[1]["weights"], abs=1e-7)  # one model on both ranks
    assert two[0]["weights"] == pytest.approx(one["weights"], abs=1e-5)  # 2 processes = 1
    assert one["loss"] != two[0]["loss"]  # each rank trained on its own half of the batch
    if stage == 3:  # ZeRO-3 holds about half of each parameter on each rank
        assert all(r["full"] == one["full"] and r["local"] < 0.6 * r["full"] for r in two), two
    else:  # ZeRO-2 shards gradients and optimizer state, not the parameters
        assert all(r["local"] == r["full"] for r in two)
