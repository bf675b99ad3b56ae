"""One DeepSpeed ZeRO step on CPU (gloo): each rank writes how its parameters are held and the loss.

python -m torch.distributed.run --nproc_per_node N deepspeed_worker.py STAGE OUT_DIR
"""

import json
import sys
from pathlib import Path

import deepspeed
import torch


def main() -> None:
    stage, out = int(sys.argv[1]), Path(sys.argv[2])
    # DeepSpeed's CPU accelerator compiles a shared-memory all-reduce (ninja, ~1 min on a fresh machine)
    # on first use; gloo does the same all-reduce without it. What this tests is the engine and ZeRO's
    # partitioning, so the op is declared unavailable and gloo carries the collectives.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    config = {
        "train_micro_batch_size_per_gpu": 4 // world, "gradient_accumulation_steps": 1,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-2, "torch_adam": True}}, "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,
    }  # fmt: skip
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
    x, y = torch.randn(4, 8), torch.randn(4, 1)  # the same global batch on every rank; each takes its share
    mine = slice(rank * (4 // world), (rank + 1) * (4 // world))
    loss = torch.nn.functional.mse_loss(engine(x[mine]), y[mine])
    engine.backward(loss)
    engine.step()
    params = list(engine.module.parameters())
    # ZeRO-3: this rank's partition (ds_tensor); ZeRO-2 keeps whole parameters (it shards optimizer state)
    local = sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in params)
    full = sum(getattr(p, "ds_numel", p.numel()) for p in params)
    with deepspeed.zero.GatheredParameters(params, enabled=stage == 3):
        weights = torch.cat([p.detach().flatten() for p in engine.module.parameters()]).tolist()
    report = {
        "rank": rank,
        "world": world,
        "loss": float(loss.detach()),
        "local": local,
        "full": full,
        "weights": weights,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    # Tear the group down in step on every rank: left to interpreter exit, gloo's threads were once
    # destroyed mid-use ("terminate called without an active exception", SIGABRT on one rank in CI).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
