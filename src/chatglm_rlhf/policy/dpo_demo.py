"""DPO on RM-labelled policy samples as one pipeline stage, and the demo's DPO metrics.

:func:`run_dpo_stage` is what the pipeline calls: the SFT model samples k answers per prompt, the scorer
(the reward model; in the demo possibly the gold judge standing in for it) labels best vs worst, and DPO
trains on those pairs. :func:`dpo_demo_metrics` compares the DPO model with the SFT model on held-out
prompts under the demo's gold judge (``dpo.gold_win_rate_vs_sft``, ``dpo.gold_score``,
``dpo.mean_response_length``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from chatglm_rlhf.data.schema import Comparison, DialogueSample
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.policy.dpo import DPOConfig, DPOTrainer
from chatglm_rlhf.policy.pairs import PairStats, Scorer, pairs_from_policy
from chatglm_rlhf.utils.training import save_json


def load_prompts(path: str) -> list[DialogueSample]:
    from chatglm_rlhf.data.io import read_samples

    if not path:
        raise UserError("dpo: prompts=... is required with pairs_from=rm (our samples JSONL)")
    if not Path(path).exists():
        raise UserError(f"dpo: prompts file {path} not found")
    samples, report = read_samples(path)
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
        shard=(state.process_index, state.num_processes),
    )  # fmt: skip
    out = Path(cfg.output_dir)
    if state.is_main_process:
        write_jsonl(out / "pairs.jsonl", pairs)
        save_json(out / "pair_stats.json", stats.to_dict())
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


def dpo_demo_metrics(
    dpo_model_dir: str | Path,
    sft_model_dir: str | Path,
    eval_prompts: list[DialogueSample],
    judge=None,
    settings: GenerationSettings | None = None,
    max_prompt_tokens: int | None = None,
    output_dir: str | Path | None = None,
) -> dict:
    """The DPO model vs the SFT model on ``eval_prompts`` (greedy by default) under the gold judge.

    Returns ``gold_win_rate_vs_sft`` (wins + half the ties, over all prompts), ``gold_score`` and
    ``sft_gold_score`` (mean gold totals), ``mean_response_length`` / ``sft_mean_response_length``
    (mean response tokens under the policy's tokenizer, eos excluded) and the win/tie/loss counts.
    """
    from chatglm_rlhf.data.templates import encode_text
    from chatglm_rlhf.evaluate.evaluate import evaluate_models
    from chatglm_rlhf.evaluate.judges import GoldJudgeAdapter
    from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer

    if judge is None:
        from chatglm_rlhf.demo.judge import GoldJudge

        judge = GoldJudgeAdapter(GoldJudge())
    tok = load_tokenizer(str(dpo_model_dir))
    dpo = load_causal_lm(str(dpo_model_dir), dtype="fp32", device="cpu")
    sft = load_causal_lm(str(sft_model_dir), dtype="fp32", device="cpu")
    settings = settings or GenerationSettings(max_new_tokens=64, greedy=True)
    res = evaluate_models(
        dpo,
        sft,
        tok,
        eval_prompts,
        judge,
        settings,
        max_prompt_tokens=max_prompt_tokens,
        output_dir=output_dir,
    )
    n_tokens = {
        side: [len(encode_text(tok, r[side])) for r in res.records] for side in ("policy", "baseline")
    }
    overall = res.summary["overall"]
    scores = res.summary.get("mean_score", {})
    return {
        "gold_win_rate_vs_sft": overall["win_rate"],
        "gold_win_rate_ci": overall["ci"],
        "gold_score": scores.get("policy"),
        "sft_gold_score": scores.get("baseline"),
        "mean_response_length": sum(n_tokens["policy"]) / max(1, len(n_tokens["policy"])),
        "sft_mean_response_length": sum(n_tokens["baseline"]) / max(1, len(n_tokens["baseline"])),
        "win": overall["win"],
        "tie": overall["tie"],
        "loss": overall["loss"],
        "n": overall["n"],
    }
