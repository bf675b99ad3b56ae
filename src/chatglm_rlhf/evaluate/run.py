"""``chatglm-rlhf evaluate`` end to end: read prompts, generate with each model in turn, judge, save.

Models are loaded one at a time (policy, then baseline, then the judge) and freed after use, so a GPU
only ever holds one of them.
"""

from __future__ import annotations

import dataclasses
import gc
import sys

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.evaluate.evaluate import EvalResult, EvaluateConfig, generate_responses, judge_responses


def _free(*objs) -> None:
    del objs
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # torch is a dependency; this only guards odd environments
        pass


def _answer(cfg: EvaluateConfig, path: str, samples, label: str) -> tuple[list[str], list[bool]]:
    from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer

    print(f"evaluate: {label} ({path}) answers {len(samples)} prompts", file=sys.stderr)
    tok = load_tokenizer(path, trust_remote_code=cfg.trust_remote_code)
    model = load_causal_lm(path, dtype=cfg.dtype, device=cfg.device, trust_remote_code=cfg.trust_remote_code)
    out = generate_responses(
        model, tok, samples, cfg.generation, cfg.max_prompt_tokens, cfg.seed, cfg.progress
    )
    _free(model)
    return out


def make_judge(cfg: EvaluateConfig):
    """The judge ``cfg.judge`` names, loaded (rm and llm need ``judge_model``)."""
    if cfg.judge == "gold":
        from chatglm_rlhf.evaluate.judges import GoldJudgeAdapter
        from chatglm_rlhf.utils.plugins import load_object

        return GoldJudgeAdapter(
            load_object(cfg.gold_judge, "gold_judge")(), None if cfg.tie_threshold < 0 else cfg.tie_threshold
        )
    if not cfg.judge_model:
        raise UserError(f"evaluate: judge={cfg.judge} needs judge_model=... (a local model directory)")
    if cfg.judge == "rm":
        from chatglm_rlhf.evaluate.judges import RewardJudge

        return RewardJudge(_load_reward_scorer(cfg), max(cfg.tie_threshold, 0.0))
    from chatglm_rlhf.evaluate.judges import LLMJudge
    from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer

    tok = load_tokenizer(cfg.judge_model, trust_remote_code=cfg.trust_remote_code)
    model = load_causal_lm(
        cfg.judge_model, dtype=cfg.dtype, device=cfg.device, trust_remote_code=cfg.trust_remote_code
    )
    return LLMJudge(
        model,
        tok,
        max_new_tokens=cfg.judge_max_new_tokens,
        batch_size=cfg.generation.batch_size,
        max_prompt_tokens=cfg.judge_max_prompt_tokens,
        progress=cfg.progress,
    )


def choose_judge(cfg: EvaluateConfig, samples) -> EvaluateConfig:
    """``judge=auto`` resolved by what the prompts and ``judge_model`` support, and ``judge=gold`` checked
    on the first prompt, both before any model generates: a judge that cannot score these prompts is a
    one-line error now, not after every answer has been generated."""
    gold_ok = _gold_scores(cfg, samples[:1])
    if cfg.judge == "gold" and not gold_ok:
        raise UserError(
            f"evaluate: judge=gold cannot score {cfg.prompts} (the gold judge knows only demo-world prompts); "
            "use judge=rm judge_model=RM_DIR or judge=llm judge_model=CHAT_MODEL"
        )
    if cfg.judge != "auto":
        return cfg
    if gold_ok:
        judge = "gold"
    elif cfg.judge_model:
        judge = "rm" if _is_reward_model(cfg.judge_model) else "llm"
    else:
        raise UserError(
            f"evaluate: {cfg.prompts} has no gold answers (not demo-world prompts): give judge_model=RM_DIR "
            "(a reward model) or judge_model=CHAT_MODEL (an LLM judge)"
        )
    print(f"evaluate: judge=auto -> {judge}", file=sys.stderr)
    return dataclasses.replace(cfg, judge=judge)


def _gold_scores(cfg: EvaluateConfig, samples) -> bool:
    try:
        make_judge(dataclasses.replace(cfg, judge="gold")).compare_many(samples, ["a"], ["a"])
    except (ValueError, KeyError, TypeError, UserError):
        return False
    return True


def _is_reward_model(path: str) -> bool:
    """A sequence classifier with one output (our reward models) rather than a causal LM."""
    import json
    from pathlib import Path

    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    archs = json.loads(config.read_text()).get("architectures") or []
    return any(a.endswith("ForSequenceClassification") for a in archs)


def _load_reward_scorer(cfg: EvaluateConfig):
    try:
        from chatglm_rlhf.reward.scorer import RewardScorer
    except ModuleNotFoundError as e:
        raise UserError(f"evaluate: judge=rm needs chatglm_rlhf.reward.scorer ({e})") from None
    return RewardScorer.from_pretrained(
        cfg.judge_model, device=cfg.device, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code
    )


def run_evaluate(cfg: EvaluateConfig) -> EvalResult:
    from chatglm_rlhf.evaluate.prompts import load_prompts
    from chatglm_rlhf.evaluate.winrate import format_table

    missing = [k for k in ("policy", "baseline", "prompts") if not getattr(cfg, k)]
    if missing:
        raise UserError(f"evaluate: {', '.join(f'{k}=...' for k in missing)} required")
    if cfg.judge in ("rm", "llm") and not cfg.judge_model:
        raise UserError(f"evaluate: judge={cfg.judge} needs judge_model=... (a local model directory)")
    samples, report = load_prompts(cfg.prompts, cfg.prompts_format, cfg.limit)
    report.print()
    if not samples:
        raise UserError(f"evaluate: no usable prompts in {cfg.prompts}")
    cfg = choose_judge(cfg, samples)  # before any answer is generated: a judge that cannot score fails now
    pol, fin_p = _answer(cfg, cfg.policy, samples, "policy")
    base, fin_b = _answer(cfg, cfg.baseline, samples, "baseline")
    judge = make_judge(cfg)
    try:
        result = judge_responses(
            samples, pol, base, judge, (fin_p, fin_b), cfg.bootstrap, cfg.confidence, cfg.seed
        )
    except ValueError as e:
        if cfg.judge == "gold":  # the gold judge knows only demo-world prompts
            raise UserError(f"evaluate: judge=gold cannot score these prompts: {e}") from None
        raise
    result.summary["policy"], result.summary["baseline"] = cfg.policy, cfg.baseline
    path = result.save(cfg.output_dir)
    print(format_table(result.summary, f"{cfg.policy} vs {cfg.baseline} (judge: {cfg.judge})"))
    lengths = result.summary["lengths"]
    print(
        f"mean answer length (chars): policy {lengths['policy']['mean_chars']:.1f}, "
        f"baseline {lengths['baseline']['mean_chars']:.1f}"
    )
    info = result.summary["judge"]
    if "agreement_rate" in info:
        print(
            f"llm judge: the two orders agreed on {info['agreement_rate']:.1%} of pairs; "
            f"{info['unparsed_replies']} replies named neither answer (counted as ties)"
        )
    print(f"wrote {path} and responses.jsonl")
    return result
