"""A run's data from one preference file: leak-free parts, prompts and SFT data (tasks without gold).

:func:`write_parts` splits comparisons by dialogue context (:func:`data.splits.split_comparisons`) into
``rm_train`` / ``rm_eval`` / ``judge_train`` / ``dev`` (when ``dev`` > 0) / ``heldout`` and writes, next
to them, the files of ``tasks/base.py``: PPO and DPO prompts are rm_train's contexts, ptx SFT data its
chosen responses, the held-out SFT data rm_eval's, the dev prompts (PPO checkpoint selection) dev's
contexts and the evaluation prompts heldout's contexts (never used in training nor in selection).
``data/split.json`` records which context went where (:func:`split_record`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatglm_rlhf.config import field_
from chatglm_rlhf.data.schema import Comparison, DialogueSample
from chatglm_rlhf.errors import ConfigError, UserError
from chatglm_rlhf.utils.files import atomic_write_text


@dataclass
class PartSettings:
    seed: int = field_(0, help="seed of the split (by dialogue context) and of the prompt samples")
    rm_eval: float = field_(0.1, help="share of comparisons held out to evaluate the reward models")
    judge_train: float = field_(0.35, help="share that trains the independent judge RM only")
    heldout: float = field_(0.1, help="share whose contexts are the evaluation prompts (never trained on)")
    dev: float = field_(
        0.0, help="share whose contexts are the dev prompts (PPO checkpoint selection; 0 = no dev part)"
    )
    n_rl: int = field_(80, help="PPO / DPO prompts (rm_train contexts; 0 = all)")
    n_eval: int = field_(100, help="evaluation prompts (heldout contexts; 0 = all)")
    n_dev: int = field_(0, help="dev prompts (dev contexts; 0 = all)")
    n_sft: int = field_(0, help="ptx SFT examples: rm_train's chosen responses (0 = all)")
    n_sft_heldout: int = field_(32, help="rm_eval's chosen responses for the held-out SFT loss")


def validate_parts(d: PartSettings, where: str, prefix: str = "task.") -> None:
    for key in ("rm_eval", "judge_train", "heldout"):
        share = getattr(d, key)
        if not 0.0 < share < 1.0:
            raise ConfigError(f"{where}: {prefix}{key} must be in (0, 1), got {share}")
    if not 0.0 <= d.dev < 1.0:
        raise ConfigError(f"{where}: {prefix}dev must be in [0, 1), got {d.dev}")
    held = d.rm_eval + d.judge_train + d.heldout + d.dev
    if held >= 0.9:
        raise ConfigError(
            f"{where}: {prefix}rm_eval + {prefix}judge_train + {prefix}heldout + {prefix}dev = "
            f"{held:g} leaves under 10% of the data to train the proxy RM"
        )
    for key in ("n_rl", "n_eval", "n_dev", "n_sft", "n_sft_heldout"):
        if getattr(d, key) < 0:
            raise ConfigError(f"{where}: {prefix}{key} must be >= 0, got {getattr(d, key)}")


def sample_prompts(prompts: list, n: int, seed: int) -> list:
    """``n`` prompts drawn by ``seed`` (all when n = 0 or n >= len), in a seeded order."""
    order = list(range(len(prompts)))
    random.Random(f"real-prompts|{seed}").shuffle(order)
    keep = order if n == 0 else order[:n]
    return [prompts[i] for i in keep]


def write_parts(comps: list[Comparison], data_dir: Path, d: PartSettings, source: str) -> dict[str, Any]:
    """The parts, prompts and SFT files in ``data_dir``; metrics (counts, and the leak check)."""
    from chatglm_rlhf.data.io import write_jsonl
    from chatglm_rlhf.data.splits import context_key, contexts_as_prompts, split_comparisons

    fractions = {"rm_train": 1.0 - d.rm_eval - d.judge_train - d.heldout - d.dev, "rm_eval": d.rm_eval,
                 "judge_train": d.judge_train, "dev": d.dev, "heldout": d.heldout}  # fmt: skip
    if not d.dev:
        del fractions["dev"]
    parts = split_comparisons(comps, fractions, seed=d.seed)
    empty = [k for k, v in parts.items() if not v]
    if empty:
        import math

        from chatglm_rlhf.data.splits import context_key

        contexts = len({context_key(c) for c in comps})
        smallest = min(f for f in fractions.values() if f > 0)
        sizes = ", ".join(f"{k} {len(v)}" for k, v in parts.items())
        raise UserError(
            f"{source}: {len(comps)} comparisons over {contexts} dialogue contexts are too few to fill the parts "
            f"{empty} (got: {sizes}); the parts split by context and the smallest share is {smallest:.2f}, "
            f"so about {math.ceil(2 / smallest)} contexts or more are needed (or raise that share)"
        )
    for name, part in parts.items():
        write_jsonl(data_dir / f"{name}.jsonl", part)
    rl = sample_prompts(contexts_as_prompts(parts["rm_train"]), d.n_rl, d.seed)
    heldout = sample_prompts(contexts_as_prompts(parts["heldout"]), d.n_eval, d.seed)
    write_jsonl(data_dir / "rl_prompts.jsonl", rl)
    write_jsonl(data_dir / "eval_prompts.jsonl", heldout)
    if "dev" in parts:
        write_jsonl(
            data_dir / "dev_prompts.jsonl", sample_prompts(contexts_as_prompts(parts["dev"]), d.n_dev, d.seed)
        )

    def sft_records(part, n):
        rows = sample_prompts([c for c in part if c.label != "tie"], n, d.seed)
        return [
            DialogueSample(id=c.sample_id or context_key(c), prompt=c.prompt, history=list(c.history),
                           responses=[c.chosen], category=c.category)
            for c in rows
        ]  # fmt: skip

    sft = sft_records(parts["rm_train"], d.n_sft)
    write_jsonl(data_dir / "sft.jsonl", sft)
    write_jsonl(data_dir / "sft_heldout.jsonl", sft_records(parts["rm_eval"], d.n_sft_heldout))
    trained = {context_key(c) for k in ("rm_train", "rm_eval", "judge_train") for c in parts[k]}
    record = split_record(parts, rl, heldout)
    atomic_write_text(data_dir / "split.json", json.dumps(record, indent=1))
    return {
        "parts": {k: len(v) for k, v in parts.items()},
        "rl_prompts": len(rl),
        "eval_prompts": len(heldout),
        "sft_examples": len(sft),
        "multi_turn_eval_prompts": sum(bool(s.history) for s in heldout),
        # Must be 0: an evaluation context that any training part also holds would leak.
        "eval_contexts_seen_in_training": sum(context_key(s) in trained for s in heldout),
        "dev_prompts": len(record["contexts"].get("dev", [])),
        "split_file": "data/split.json",
    }


def split_record(parts: dict[str, list[Comparison]], rl: list, evaluation: list) -> dict[str, Any]:
    """Which dialogue contexts went where: each part's, the RL prompts' and the evaluation prompts'
    (context keys, sorted), with the uses of each part spelled out, so a reader (and the leak test) can
    check that no evaluation context was trained on, by the policy, the proxy RM or a judge RM."""
    from chatglm_rlhf.data.splits import context_key

    contexts = {k: sorted({context_key(c) for c in v}) for k, v in parts.items()}
    contexts["rl_prompts"] = sorted({context_key(s) for s in rl})
    contexts["eval_prompts"] = sorted({context_key(s) for s in evaluation})
    uses = {"rm_train": "proxy RM training; PPO / DPO prompts; ptx answers", "rm_eval": "RM accuracy; "
            "held-out SFT loss", "judge_train": "judge RM training (split among the judges)",
            "dev": "PPO checkpoint selection", "heldout": "evaluation prompts; RM accuracy on its pairs"}  # fmt: skip
    return {"uses": {k: uses[k] for k in parts}, "counts": {k: len(v) for k, v in contexts.items()},
            "contexts": contexts}  # fmt: skip
