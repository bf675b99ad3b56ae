"""DPO's entry points: :func:`run_dpo` (the ``chatglm-rlhf dpo`` command, everything from paths) and
:func:`run_dpo_stage` (the pipeline: the SFT model samples k answers per prompt, any scorer labels best
vs worst, and DPO trains on those pairs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from chatglm_rlhf.data.schema import Comparison, DialogueSample
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.policy.dpo.config import DPOConfig
from chatglm_rlhf.policy.dpo.pairs import PairStats, pairs_from_policy
from chatglm_rlhf.policy.dpo.trainer import DPOTrainer
from chatglm_rlhf.reward.protocol import Scorer
from chatglm_rlhf.utils.training import save_json


def load_prompts(path: str, strict: bool = False) -> list[DialogueSample]:
    from chatglm_rlhf.data.io import read_samples

    if not path:
        raise UserError("dpo: prompts=... is required with pairs_from=rm (our samples JSONL)")
    if not Path(path).exists():
        raise UserError(f"dpo: prompts file {path} not found")
    samples, report = read_samples(path, strict=strict)
    report.print()
    if not samples:
        raise UserError(f"{path}: no usable prompts")
    return samples


def load_reward_scorer(cfg: DPOConfig) -> Scorer:
    """The reward model in ``cfg.reward_model`` as a scorer (``reward.scorer.RewardScorer``)."""
    if not cfg.reward_model:
        raise UserError("dpo: reward_model=... is required with pairs_from=rm")
    try:
        from chatglm_rlhf.reward.scorer import RewardScorer
    except ModuleNotFoundError as e:
        raise UserError(f"dpo: pairs_from=rm needs chatglm_rlhf.reward.scorer ({e})") from None
    if not Path(cfg.reward_model).exists():
        raise UserError(f"dpo: reward_model directory {cfg.reward_model} not found")
    from accelerate import PartialState

    # This process's device (with several GPUs each rank has its own), as the trainer's accelerator has.
    device = str(PartialState(cpu=cfg.cpu).device)
    return RewardScorer.from_pretrained(
        cfg.reward_model, device=device, trust_remote_code=cfg.trust_remote_code
    )


def build_rm_pairs(
    model, tokenizer, prompts: list[DialogueSample], scorer: Scorer, cfg: DPOConfig
) -> tuple[list[Comparison], PairStats]:
    """Best-vs-worst pairs from ``cfg.k`` policy samples per prompt; saved as ``pairs.jsonl`` + stats.

    With several processes each samples and scores its share of the prompts on its own device; every
    process gets all pairs, and only the main process writes the files.
    """
    from accelerate import PartialState

    from chatglm_rlhf.data.io import write_jsonl

    state = PartialState()
    model.to(state.device)  # sample where the trainer will train (a no-op on CPU)
    # The prompt must leave room for the longest response the sampler may write (plus eos).
    max_prompt = max(1, cfg.max_length - cfg.generation.max_new_tokens - 1)
    pairs, stats = pairs_from_policy(
        model, tokenizer, prompts, scorer, cfg.k, cfg.generation, cfg.min_spread, cfg.seed, max_prompt,
        shard=(state.process_index, state.num_processes), progress=cfg.progress,
    )  # fmt: skip
    out = Path(cfg.output_dir)
    from chatglm_rlhf.utils.console import quiet

    if state.is_main_process:
        write_jsonl(out / "pairs.jsonl", pairs)
        save_json(out / "pair_stats.json", stats.to_dict())
    if state.is_main_process and not quiet():  # a pipeline stage: the counts are in its pair_stats
        print(
            f"dpo pairs: {stats.pairs} from {stats.prompts} prompts (k={cfg.k}); "
            f"{stats.skipped_small_spread} skipped with spread < {cfg.min_spread}; "
            f"mean spread {stats.mean_spread:.3f}; written to {out / 'pairs.jsonl'}"
        )
    if not pairs:
        raise UserError(
            f"dpo: every prompt's score spread was below min_spread={cfg.min_spread}; lower it or raise k"
        )
    return pairs, stats


def run_dpo_stage(
    sft_model_dir: str | Path,
    out_dir: str | Path,
    prompts: list[DialogueSample],
    scorer: Scorer,
    cfg: DPOConfig | None = None,
) -> dict:
    """Sample from the SFT model, label best vs worst with ``scorer``, train DPO; the model lands in ``out_dir``.

    ``cfg`` supplies everything else (k, min_spread, generation, beta, lr, steps...); its ``model``,
    ``output_dir`` and ``pairs_from`` are replaced by the arguments. Returns the training result
    (``steps``, ``train/*`` metrics, ``pairs_per_second``) plus ``pair_stats`` and ``model_dir``; it is
    also in ``out_dir/dpo_result.json``, the pairs in ``out_dir/pairs.jsonl``.
    """
    cfg = dataclasses.replace(
        cfg or DPOConfig(), model=str(sft_model_dir), output_dir=str(out_dir), pairs_from="rm"
    )
    trainer = DPOTrainer(cfg)
    pairs, stats = build_rm_pairs(trainer.model, trainer.tokenizer, prompts, scorer, cfg)
    result = trainer.train(pairs)
    result["pair_stats"] = stats.to_dict()
    result["model_dir"] = str(out_dir)
    if trainer.acc.is_main_process:
        save_json(Path(out_dir) / "dpo_result.json", result)
    return result


def load_preference_pairs(path: str, strict: bool = False) -> list[Comparison]:
    """Comparisons from any preference file our importers read (ours, TRL, HH-RLHF); report printed."""
    from chatglm_rlhf.data.formats import load_comparisons

    if not path:
        raise UserError("dpo: data=... is required with pairs_from=data (a preference JSONL file)")
    if not Path(path).exists():
        raise UserError(f"dpo: data file {path} not found")
    comparisons, report = load_comparisons(path, strict=strict)
    report.print()
    return comparisons


def run_dpo(cfg: DPOConfig) -> dict:
    """The ``chatglm-rlhf dpo`` command: pairs from a file or from RM-labelled policy samples, then DPO."""
    eval_pairs = load_preference_pairs(cfg.eval_data, cfg.strict) if cfg.eval_data else None
    if cfg.pairs_from == "data":
        return DPOTrainer(cfg).train(load_preference_pairs(cfg.data, cfg.strict), eval_pairs)
    trainer = DPOTrainer(cfg)
    prompts = load_prompts(cfg.prompts, cfg.strict)
    pairs, stats = build_rm_pairs(trainer.model, trainer.tokenizer, prompts, load_reward_scorer(cfg), cfg)
    result = trainer.train(pairs, eval_pairs)
    result["pair_stats"] = stats.to_dict()
    if trainer.acc.is_main_process:
        save_json(Path(cfg.output_dir) / "dpo_result.json", result)
    return result


def train(inputs, cfg: DPOConfig) -> dict:
    """The registry's entry point (:mod:`chatglm_rlhf.policy.registry`): DPO on RM-labelled SFT samples."""
    cfg = dataclasses.replace(
        cfg, reward_model=inputs.reward_model or cfg.reward_model, progress=inputs.progress
    )
    result = run_dpo_stage(inputs.sft_path, inputs.output_dir, inputs.prompts, inputs.scorer, cfg)
    return {k: v for k, v in result.items() if k != "model_dir"}
