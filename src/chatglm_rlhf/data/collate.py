"""Padding and length-grouped batching for :class:`~chatglm_rlhf.data.templates.Encoded` sequences."""

from __future__ import annotations

import random

import torch

from chatglm_rlhf.data.templates import IGNORE_INDEX, Encoded

MEGA_BATCH_FACTOR = 50  # batches per sorted mega-batch in length_grouped_batches


def pad_sequences(seqs: list[list[int]], pad_value: int, side: str = "right") -> torch.LongTensor:
    """A ``(len(seqs), longest)`` tensor; ``side="left"`` puts the padding first (for generation)."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), width), pad_value, dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        row = torch.as_tensor(s, dtype=torch.long)
        if side == "right":
            out[i, : len(s)] = row
        else:
            out[i, width - len(s) :] = row
    return out


def collate_encoded(batch: list[Encoded], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask``, ``labels`` (padding = -100) and ``prompt_lens``.

    ``prompt_lens`` counts prompt tokens without padding: with ``side="left"`` a row's prompt starts at
    ``width - len(row)``.
    """
    ids = [e.input_ids for e in batch]
    return {
        "input_ids": pad_sequences(ids, pad_id, side),
        "attention_mask": pad_sequences([[1] * len(s) for s in ids], 0, side),
        "labels": pad_sequences([e.labels for e in batch], IGNORE_INDEX, side),
        "prompt_lens": torch.tensor([e.prompt_len for e in batch], dtype=torch.long),
    }


def length_grouped_batches(
    lengths: list[int], batch_size: int, seed: int, shuffle: bool = True
) -> list[list[int]]:
    """Batches of indices with similar lengths, to cut padding; every index appears exactly once.

    Indices are (optionally) shuffled, cut into mega-batches of ``50 * batch_size``, sorted by length
    (longest first) within each, split into batches, and the batch order is shuffled. Sorting only
    inside mega-batches keeps some randomness in which examples share a batch.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    mega = MEGA_BATCH_FACTOR * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    if shuffle:
        rng.shuffle(batches)
    return batches
