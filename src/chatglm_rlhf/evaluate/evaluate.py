"""Policy vs baseline: both answer every prompt, a judge compares each pair, win/tie/loss with a CI.

:func:`evaluate_models` is the whole thing for models already in memory. :func:`run_evaluate` (the CLI)
loads the policy, generates, frees it, does the same for the baseline and only then loads the judge,
so at most one model sits in memory at a time.

Outputs in ``output_dir``: ``responses.jsonl`` (one line per prompt: both answers, whether each finished
before ``max_new_tokens``, the verdict and the judge's scores when it has them) and ``eval.json`` (the
layout :mod:`chatglm_rlhf.evaluate.report` reads as ``ppo.eval`` / ``dpo.eval``)::

    {"judge": {...}, "n": 200, "overall": {win, tie, loss, n, win_share, tie_rate, loss_rate,
     win_rate, ci: [lo, hi], confidence}, "per_category": {category: {...same...}},
     "lengths": {"policy": {...}, "baseline": {...}}, "mean_score": {"policy": x, "baseline": y},
     "responses_path": "responses.jsonl", "output_dir": "<output_dir>"}
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from chatglm_rlhf.config import field_
from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.generation import GenerationSettings


@dataclass
class EvalGeneration(GenerationSettings):
    """Decoding for evaluation: greedy by default, as the paper.

    A subclass rather than ``GenerationSettings(greedy=True)`` as the field default because a nested
    override (``generation.max_new_tokens=...``) is built from the class defaults, which would silently
    switch sampling back on.
    """

    max_new_tokens: int = field_(128, help="tokens to generate at most per answer")
    greedy: bool = field_(True, help="greedy decoding (the paper's evaluation); false = sample")


@dataclass
class EvaluateConfig:
    policy: str = field_("", help="the model being evaluated (e.g. the PPO model): local path or hub id")
    baseline: str = field_("", help="the model it is compared with (the SFT model in the paper)")
    prompts: str = field_("", help="prompts: our samples JSONL or the AlignBench layout (required)")
    prompts_format: Literal["auto", "ours", "alignbench"] = field_("auto", help="auto | ours | alignbench")
    limit: int = field_(0, help="evaluate only the first N prompts (0 = all)")
    judge: Literal["auto", "gold", "rm", "llm"] = field_(
        "auto",
        help="gold (demo world) | rm (reward model) | llm (local chat model, asked in both orders) | auto: gold "
        "when the gold judge can score the prompts, else rm or llm by what judge_model is",
    )
    judge_model: str = field_("", help="rm: the reward model directory; llm: the judge chat model")
    gold_judge: str = field_(
        "chatglm_rlhf.tasks.demo.judge:GoldJudge",
        help="gold: the ground-truth judge as module:Class (a tasks.base.GoldJudge; default: the demo world's)",
    )
    tie_threshold: float = field_(
        -1.0, help="score difference below which a pair is a tie (rm; gold: -1 = the gold judge's own)"
    )
    judge_max_new_tokens: int = field_(8, help="llm: tokens the judge may reply with")
    judge_max_prompt_tokens: int = field_(2048, help="llm: longer judge prompts keep their last tokens")
    output_dir: str = field_("out/eval", help="where responses.jsonl and eval.json go")
    max_prompt_tokens: int = field_(384, help="history is trimmed (oldest turns first) to fit")
    generation: EvalGeneration = field_(EvalGeneration(), help="decoding for both models")
    bootstrap: int = field_(1000, help="bootstrap resamples for the confidence interval")
    confidence: float = field_(0.95, help="confidence level of the interval")
    seed: int = field_(0, help="seed for sampling (when not greedy) and the bootstrap")
    device: str = field_("auto", help="auto | cpu | cuda | cuda:N")
    dtype: str = field_("auto", help="auto | fp32 | bf16 | fp16")
    trust_remote_code: bool = field_(False, help="allow model code from the checkpoints (ChatGLM3)")
    progress: bool = field_(True, help="show progress bars")


@dataclass
class EvalResult:
    """Per-prompt records and the summary that becomes ``eval.json``."""

    records: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def verdicts(self) -> list[str]:
        return [r["verdict"] for r in self.records]

    def save(self, output_dir: str | Path) -> Path:
        from chatglm_rlhf.data.io import write_jsonl
        from chatglm_rlhf.utils.training import save_json

        out = Path(output_dir)
        write_jsonl(out / "responses.jsonl", self.records)
        self.summary["responses_path"] = "responses.jsonl"
        self.summary["output_dir"] = str(out)  # where responses_path lives when the summary is copied
        save_json(out / "eval.json", self.summary)
        return out / "eval.json"


def generate_responses(
    model,
    tokenizer,
    samples: list[DialogueSample],
    settings: GenerationSettings,
    max_prompt_tokens: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[list[str], list[bool]]:
    """One answer per sample (greedy unless ``settings`` says otherwise), and whether each finished."""
    from chatglm_rlhf.data.templates import prompt_ids
    from chatglm_rlhf.models.generation import decode_response, make_generator

    prompts = [prompt_ids(tokenizer, s, max_prompt_tokens)[0] for s in samples]
    gens = make_generator(model, tokenizer, settings, progress).generate(prompts, 1, settings, seed=seed)
    return [decode_response(tokenizer, g[0]) for g in gens], [g[0].finished for g in gens]


def length_stats(responses: list[str], finished: list[bool] | None = None) -> dict:
    """Characters and words per answer (mean, median, p90, max) and the share cut at the token limit."""
    if not responses:
        return {"n": 0}
    chars = [len(r) for r in responses]
    words = [len(r.split()) for r in responses]
    out = {"n": len(responses)}
    for name, xs in (("chars", chars), ("words", words)):
        s = sorted(xs)
        out[f"mean_{name}"] = statistics.fmean(xs)
        out[f"median_{name}"] = float(statistics.median(xs))
        out[f"p90_{name}"] = float(s[min(len(s) - 1, int(0.9 * len(s)))])
        out[f"max_{name}"] = s[-1]
    out["empty"] = sum(not r.strip() for r in responses)
    if finished is not None:
        out["unfinished_rate"] = sum(not f for f in finished) / len(finished)
    return out


def diversity_stats(responses: list[str]) -> dict:
    """How many different answers a model gives: a policy that reward-hacked its RM often collapses
    onto one text for every prompt, which a win rate alone does not show."""
    if not responses:
        return {"n": 0}
    counts: dict[str, int] = {}
    for r in responses:
        key = " ".join(r.split())
        counts[key] = counts.get(key, 0) + 1
    top, n_top = max(counts.items(), key=lambda kv: kv[1])
    return {
        "n": len(responses),
        "distinct": len(counts),
        "distinct_share": len(counts) / len(responses),
        "top_response": top,
        "top_response_share": n_top / len(responses),
    }


def judge_responses(
    samples: list[DialogueSample],
    policy_responses: list[str],
    baseline_responses: list[str],
    judge,
    finished: tuple[list[bool], list[bool]] | None = None,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> EvalResult:
    """Verdicts (policy = answer ``a``), per-category win/tie/loss with CIs, length statistics."""
    from chatglm_rlhf.evaluate import winrate
    from chatglm_rlhf.evaluate.judges import judge_pairs

    verdicts = judge_pairs(judge, samples, policy_responses, baseline_responses)
    sa, sb = getattr(judge, "last_scores", ([], []))
    has_scores = len(sa) == len(samples) == len(sb)
    fin_p, fin_b = finished if finished else ([None] * len(samples), [None] * len(samples))
    records = []
    for i, (s, p, b, v) in enumerate(zip(samples, policy_responses, baseline_responses, verdicts)):
        rec = {
            "id": s.id,
            "category": s.category,
            "prompt": s.prompt,
            "history": [{"role": t.role, "content": t.content} for t in s.history],
            "policy": p,
            "baseline": b,
            "verdict": v,
            "outcome": winrate.to_outcome(v),
            "policy_finished": fin_p[i],
            "baseline_finished": fin_b[i],
        }
        if has_scores:
            rec["policy_score"], rec["baseline_score"] = sa[i], sb[i]
        records.append(rec)
    summary = winrate.table(verdicts, [s.category for s in samples], bootstrap, confidence, seed)
    describe = getattr(judge, "describe", None)
    summary = {
        "judge": describe() if callable(describe) else {"judge": type(judge).__name__},
        "n": len(samples),
        **summary,
        "lengths": {
            "policy": length_stats(policy_responses, finished[0] if finished else None),
            "baseline": length_stats(baseline_responses, finished[1] if finished else None),
        },
        "diversity": {
            "policy": diversity_stats(policy_responses),
            "baseline": diversity_stats(baseline_responses),
        },
    }
    if has_scores:
        summary["mean_score"] = {"policy": statistics.fmean(sa), "baseline": statistics.fmean(sb)}
    return EvalResult(records, summary)


def evaluate_models(
    policy,
    baseline,
    tokenizer,
    prompts: list[DialogueSample],
    judge,
    settings: GenerationSettings | None = None,
    baseline_tokenizer=None,
    max_prompt_tokens: int | None = None,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    output_dir: str | Path | None = None,
    progress: bool = False,
) -> EvalResult:
    """Both models answer every prompt; ``judge`` compares each pair (the policy is answer ``a``).

    ``baseline_tokenizer`` defaults to ``tokenizer``. With ``output_dir``, responses and the summary
    are saved there (see the module docstring).
    """
    settings = settings or GenerationSettings(greedy=True)
    pol, fin_p = generate_responses(policy, tokenizer, prompts, settings, max_prompt_tokens, seed, progress)
    base_tok = baseline_tokenizer or tokenizer
    base, fin_b = generate_responses(baseline, base_tok, prompts, settings, max_prompt_tokens, seed, progress)
    result = judge_responses(prompts, pol, base, judge, (fin_p, fin_b), bootstrap, confidence, seed)
    if output_dir is not None:
        result.save(output_dir)
    return result
