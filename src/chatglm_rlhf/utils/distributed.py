"""This process among the training processes (:class:`Ranks`): its share of the work and how shares meet.

One place for the rank arithmetic the trainers share (every ``count``-th item per rank, per-rank
seeds, gathers), so a single-process run stays the identity everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Ranks:
    """This process among the training processes: its share of the work, and how the shares meet.

    The default is one process, where every helper is the identity (a single-process run computes
    exactly what it did before ranks existed); :meth:`of` builds it from an ``accelerate.Accelerator``.
    """

    index: int = 0
    count: int = 1
    acc: Any = None

    @classmethod
    def of(cls, acc) -> Ranks:
        return cls(acc.process_index, acc.num_processes, acc)

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def share(self, items: list) -> list:
        """This rank's items: every ``count``-th, starting at its index."""
        return items[self.index :: self.count]

    def seed(self, seed: int) -> int:
        """A per-rank sampling seed (rank 0 keeps ``seed``), so shares are sampled independently."""
        return seed + 1_000_003 * self.index

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.count == 1 else self.acc.reduce(t.to(self.acc.device), "sum")

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's rows (equal counts), concatenated in rank order."""
        return t if self.count == 1 else self.acc.gather(t.to(self.acc.device))

    def gather_objects(self, items: list) -> list:
        """Every rank's list items (any picklable objects, any counts), concatenated in rank order."""
        if self.count == 1:
            return items
        from accelerate.utils import gather_object

        return gather_object(list(items))

    def total(self, x: float) -> float:
        return x if self.count == 1 else float(self.sum(torch.tensor(float(x), dtype=torch.float64)))

    def mean_dict(self, d: dict[str, float]) -> dict[str, float]:
        """Per-key means over ranks (every rank must hold the same keys)."""
        if self.count == 1 or not d:
            return d
        keys = sorted(d)
        vals = self.sum(torch.tensor([float(d[k]) for k in keys], dtype=torch.float64)) / self.count
        return {k: float(v) for k, v in zip(keys, vals.cpu())}


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's whole, unsharded state dict on every rank (plain, DDP and FSDP2 modules): what a
    generator's ``sync_weights`` and the final save need. A collective under FSDP2: every rank calls it.
    Defined in :mod:`chatglm_rlhf.utils.fsdp` (with the other FSDP2 helpers); here for discovery."""
    from chatglm_rlhf.utils.fsdp import full_state_dict as gather

    return gather(module)
