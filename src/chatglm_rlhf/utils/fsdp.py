"""The online loop's own FSDP2 (``torch.distributed.fsdp.fully_shard``): sharding, full weights when needed, grads.

Why our own wrapping and not accelerate's FSDP plugin: accelerate 1.15 picks FSDP only for GPU-like
devices; with ``cpu=True`` an FSDP2 plugin silently gives DDP, so nothing would be sharded on the CPU
where the tests run. ``fully_shard`` is torch's own and runs on CPU with gloo as on GPU with NCCL, so
the tested path is the path a GPU takes.

What the online loop (PPO and every critic-free estimator) needs beyond a sharded training forward/backward:

* **Generation** (rollouts, the prompt filter, the reference baseline) needs the whole weights on each
  rank: :func:`full_params` all-gathers them once and keeps them until the block ends. Generating
  through the sharded module instead would all-gather every layer at every decoding step, and ranks
  that stop decoding after different numbers of steps would wait in collectives the others never
  reach (a hang). Inside the block a forward is local computation only, so each rank may generate as
  many tokens, and call ``generate`` as often, as its own share needs.
* **Old log-probs, values, reference log-probs**: plain forwards of the sharded modules (every rank
  runs the same number of them, so the per-layer all-gathers pair up).
* **Saving and weight sync**: :func:`full_state_dict` gives the unsharded weights (plain, DDP and FSDP2
  modules alike), a collective that every rank must call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

try:  # torch >= 2.6 exports FSDP2 here; the trainers never need it without a process group
    from torch.distributed.fsdp import FSDPModule, fully_shard
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover - very old torch: nothing is ever an FSDP2 module
    FSDPModule = DTensor = fully_shard = None  # type: ignore[assignment,misc]


def is_fsdp(module: nn.Module) -> bool:
    """Whether ``module`` (or a submodule) is sharded by FSDP2."""
    return FSDPModule is not None and any(isinstance(m, FSDPModule) for m in module.modules())


def block_modules(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks to shard one by one: the classes named in ``_no_split_modules`` (what
    accelerate's TRANSFORMER_BASED_WRAP picks), searched in every submodule so a critic's body or a
    LoRA-wrapped model is found too."""
    names: set[str] = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def shard(model: nn.Module, mesh=None, entries: Iterable[nn.Module] = ()) -> nn.Module:
    """``fully_shard`` each transformer block, then each of ``entries``, then the root.

    ``entries``: submodules that are also called on their own, not only through the root (a shared
    backbone's LM and value head: generation and the rollout forwards call them directly). A sharded
    unit gathers its weights in its own forward hook; weights left to the root would stay shards in
    such a call. In place (FSDP2 swaps the module's class and turns its parameters into DTensor
    shards), so every reference to ``model`` (the generator's, the trainer's roles) now holds the
    sharded module. Build the optimizer afterwards: it must hold the DTensor parameters.
    """
    if fully_shard is None:  # pragma: no cover
        raise RuntimeError("FSDP2 needs torch >= 2.6 (torch.distributed.fsdp.fully_shard)")
    for block in block_modules(model):
        fully_shard(block, mesh=mesh)
    for entry in entries:
        fully_shard(entry, mesh=mesh)
    fully_shard(model, mesh=mesh)
    # FSDP takes the first module to run forward as the root; fix it now, so a first call through an
    # entry (generation calls the shared backbone's LM) cannot make that entry the root.
    model._get_fsdp_state()._lazy_init()
    return model


def is_sharded(t: torch.Tensor) -> bool:
    """Whether ``t`` is a DTensor (an FSDP2 parameter or gradient: a shard with a global shape)."""
    return DTensor is not None and isinstance(t, DTensor)


def sharded_fraction(module: nn.Module) -> float:
    """This rank's share of the module's parameter elements (1.0 when nothing is sharded)."""
    local = total = 0
    for p in module.parameters():
        total += p.numel()
        local += p.to_local().numel() if is_sharded(p) else p.numel()
    return local / max(total, 1)


def _fsdp_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if FSDPModule is not None and isinstance(m, FSDPModule)]


def _reshards_after_forward(m: nn.Module) -> bool:
    # FSDP2 keeps the setting as a mesh (None = keep the unsharded weights after forward); there is no
    # public getter, and the root's value is set by FSDP itself, so it is read back to be restored.
    groups = m._get_fsdp_state()._fsdp_param_groups
    return any(g.post_forward_mesh_info is not None for g in groups)


@contextmanager
def full_params(*modules: nn.Module | None) -> Iterator[None]:
    """Inside the block the FSDP2 ``modules`` hold their whole, unsharded parameters (plain tensors);
    a no-op for any other module (one process, DDP, DeepSpeed), so callers need no branch.

    A collective: every rank must enter it, also a rank that has nothing to generate. FSDP2's
    ``unshard`` is not recursive, so each FSDP module is unsharded, and told not to reshard after its
    forward (else the first decoding step would drop the weights again). Memory: the whole model per
    rank while the block lasts (as FSDP1's ``summon_full_params``); training memory comes back after.
    """
    mods = [m for mod in modules if mod is not None for m in _fsdp_modules(mod)]
    if not mods:
        yield
        return
    saved = [_reshards_after_forward(m) for m in mods]
    # transformers' generate() sees this flag (fully_shard sets it on every module it manages: a LoRA
    # model's inner LM too, which is what generate() runs on) and then decodes with synced_gpus, an
    # all-reduce per step, so every rank would have to call generate() as often as the others. With
    # the weights whole, decoding is local; the flags come back on exit.
    flagged = [
        x
        for mod in modules
        if mod is not None
        for x in mod.modules()
        if getattr(x, "_is_fsdp_managed_module", False)
    ]
    for m in mods:
        m.set_reshard_after_forward(False, recurse=False)
        m.unshard()
    for x in flagged:
        x._is_fsdp_managed_module = False
    try:
        yield
    finally:
        for x in flagged:
            x._is_fsdp_managed_module = True
        for m, reshard in zip(mods, saved):
            m.reshard()
            m.set_reshard_after_forward(reshard, recurse=False)


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's whole state dict (keys as the unwrapped module's), for plain, DDP and FSDP2 modules.

    FSDP2: every DTensor is all-gathered (``full_tensor``) on every rank, so this is a collective that
    all ranks must call in the same order (the state dict's order is the same on every rank); weights
    tied to one tensor (embeddings and LM head) stay one tensor, gathered once. DDP: the wrapped
    module's own (every rank holds all of it). What ``sync_weights`` of a generator and the final
    save use.
    """
    if isinstance(module, nn.parallel.DistributedDataParallel):
        module = module.module
    gathered: dict[int, torch.Tensor] = {}
    out = {}
    for key, value in module.state_dict().items():
        if is_sharded(value):
            if id(value) not in gathered:
                gathered[id(value)] = value.full_tensor()
            value = gathered[id(value)]
        out[key] = value.detach()
    return out


@contextmanager
def no_grad_sync(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Accumulate gradients without FSDP2's reduce-scatter (the last micro-batch reduces the sum); the
    FSDP2 counterpart of DDP's ``no_sync``, which accelerate does not apply to modules it did not wrap."""
    fsdp = [m for m in modules if FSDPModule is not None and isinstance(m, FSDPModule)]
    for m in fsdp:
        m.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        for m in fsdp:
            m.set_requires_gradient_sync(True)


def clip_grad_norm_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` for sharded gradients: the norm over every rank's shards.

    With DTensor gradients the per-shard norms come back as a DTensor that still needs its reduction
    (``full_tensor``) before the clip coefficient is the same on every rank (as torchtitan does).
    """
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    if is_sharded(total):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def device_mesh(device: torch.device, world: int):
    """A 1-D mesh over all ranks (FULL_SHARD); the process group is accelerate's (gloo on CPU)."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device.type, (world,))


class ShardedCheckpoint:
    """The sharded modules and their optimizer in a checkpoint folder, through torch.distributed.checkpoint
    (DCP): each rank writes and reads its own shards (``DIR/fsdp/__<rank>_0.distcp``, rank 0 the
    metadata), so nothing is gathered. accelerate's ``save_state`` cannot do it for modules it did not
    prepare: it would save rank 0's optimizer shards only. Resume with the same number of processes."""

    def __init__(self, modules: list[nn.Module], optimizer: torch.optim.Optimizer):
        # A container for the state-dict helpers: keys "0.<param>", "1.<param>" (actor, critic).
        self.modules = nn.ModuleList(modules)
        self.optimizer = optimizer

    def _state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model, optim = get_state_dict(self.modules, self.optimizer)
        return {"model": model, "optim": optim}

    def save(self, path: Path) -> None:
        import torch.distributed.checkpoint as dcp

        dcp.save(self._state(), checkpoint_id=str(path / "fsdp"))

    def load(self, path: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        state = self._state()  # the layout to read into (this rank's shards)
        dcp.load(state, checkpoint_id=str(path / "fsdp"))
        set_state_dict(
            self.modules, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
        )
