"""Evaluation stages: every trained policy vs the SFT model on held-out prompts, the best-of-n ceiling
and the capability probe.

With a gold judge (the demo world) the gold judge decides. Without one (real data) three judges that
fail in different ways do: the **judge RM** (trained on judge_train only, never optimised against: the
stand-in for gold, Gao et al. 2022), the **proxy RM** the policies climbed (optimistic by construction)
and the **LLM judge** (the SFT model asked in both orders; its order agreement says what it is worth).
"""

from __future__ import annotations

import dataclasses
import gc
import json
from pathlib import Path
from typing import Any

from chatglm_rlhf.pipeline.context import RunContext


def evaluate(ctx: RunContext, policies: list[str], settings, seed: int, progress: bool = True,
             prompts: str = "eval_prompts", judges: tuple[str, ...] = ("judge_rm",),
             versus: dict[str, str] | None = None) -> dict:  # fmt: skip
    """The gold judge's verdicts when the task has one (``settings``: the generation settings), else the
    judges' (``settings``: the profile's eval settings, ``judges``: the judge RMs; see
    :func:`evaluate_judges`). ``prompts``: the data file asked (``dev_prompts`` while tuning a recipe;
    tasks with a gold judge). ``versus``: policy -> another policy it is also judged against (a feedback
    round against the round before it; gold only)."""
    if ctx.gold() is not None:
        out = evaluate_gold(ctx, policies, settings, seed, progress, prompts)
        for name, other in (versus or {}).items():
            out[name].update(_versus(ctx, name, other, settings, seed, progress, prompts))
        return out
    return evaluate_judges(ctx, policies, settings, seed, progress, judges)


def _versus(ctx: RunContext, name: str, other: str, generation, seed: int, progress: bool, prompts_file: str):
    """``name``'s gold win rate against ``other`` (not SFT) on the same prompts."""
    from chatglm_rlhf.evaluate.evaluate import evaluate_models
    from chatglm_rlhf.evaluate.judges import GoldJudgeAdapter

    (policy, tok), (base, _) = ctx.load(name), ctx.load(other)
    res = evaluate_models(
        policy, base, tok, ctx.samples(prompts_file), GoldJudgeAdapter(ctx.gold()), generation, seed=seed,
        output_dir=ctx.out / "eval" / f"{name}_vs_{other}", progress=progress,
    )  # fmt: skip
    return {"versus": other, "gold_win_rate_vs_versus": res.summary["overall"]["win_rate"],
            "ci_vs_versus": res.summary["overall"]["ci"]}  # fmt: skip


def evaluate_gold(ctx: RunContext, policies: list[str], generation, seed: int, progress: bool,
                  prompts_file: str = "eval_prompts") -> dict:  # fmt: skip
    from chatglm_rlhf.evaluate.evaluate import evaluate_models
    from chatglm_rlhf.evaluate.health import collapse_warnings, repeated_notes, top_shares
    from chatglm_rlhf.evaluate.judges import GoldJudgeAdapter

    sft, tok = ctx.load("sft")
    prompts = ctx.samples(prompts_file)
    out: dict[str, Any] = {}
    for name in policies:
        policy, _ = ctx.load(name)
        res = evaluate_models(
            policy, sft, tok, prompts, GoldJudgeAdapter(ctx.gold()), generation, seed=seed,
            output_dir=ctx.out / "eval" / name, progress=progress,
        )  # fmt: skip
        s = res.summary
        score = s.get("mean_score", {})
        out[name] = {
            "gold_win_rate_vs_sft": s["overall"]["win_rate"],
            "ci": s["overall"]["ci"],
            "win_tie_loss": [s["overall"]["win"], s["overall"]["tie"], s["overall"]["loss"]],
            "gold_score": score.get("policy"),
            "sft_gold_score": score.get("baseline"),
            "mean_response_length": s["lengths"]["policy"]["mean_words"],
            "sft_mean_response_length": s["lengths"]["baseline"]["mean_words"],
            "distinct_response_share": s["diversity"]["policy"]["distinct_share"],
            "top_response_share": s["diversity"]["policy"]["top_response_share"],
            "top_response": s["diversity"]["policy"]["top_response"],
            "eval": str(Path("eval") / name / "eval.json"),
        }
        out[name]["top_response_share_by_category"] = top_shares(res.records)
        for line in collapse_warnings(name, out[name]):  # say it where people look, not only in the JSON
            print(f"[evaluate] warning: {line}")
        for line in repeated_notes(name, out[name]):
            print(f"[evaluate] note: {line}")
    return out


def _brief(summary: dict) -> dict:
    o = summary["overall"]
    out = {k: o[k] for k in ("win_rate", "ci", "win", "tie", "loss", "n")}
    if "mean_score" in summary:
        out["mean_score"] = summary["mean_score"]
    return out


def rm_judges(ctx: RunContext, judges: tuple[str, ...], tie_threshold: float) -> dict[str, Any]:
    """Every judge RM, then the proxy RM (``proxy_rm``), as judges."""
    from chatglm_rlhf.evaluate.judges import RewardJudge

    names = (*judges, "rm")
    return {("proxy_rm" if n == "rm" else n): RewardJudge(ctx.scorer(n), tie_threshold) for n in names}


def ensemble_summary(verdicts: dict[str, list[str]], seed: int) -> dict[str, Any]:
    """The judge RMs as one judge: the majority verdict's win rate (winrate.summary), the judges'
    pairwise agreement on the policy's pairs and the share where all agree."""
    from chatglm_rlhf.evaluate import winrate
    from chatglm_rlhf.evaluate.agreement import ensemble

    e = ensemble(verdicts)
    out = winrate.summary([winrate.to_outcome(v) for v in e["verdicts"]], seed=seed)
    return {**{k: out[k] for k in ("win_rate", "ci", "win", "tie", "loss", "n")}, "rule": "majority",
            "judges": list(verdicts), "pairwise_agreement": e["pairwise_agreement"],
            "all_agree": e["all_agree"]}  # fmt: skip


def evaluate_judges(ctx: RunContext, policies: list[str], ev, seed: int, progress: bool,
                    judges: tuple[str, ...] = ("judge_rm",)) -> dict:  # fmt: skip
    """The judge RMs (``judges``; with two or more also their majority, ``judges``), the proxy RM and (for
    ``ev.llm_judge_policies``) the LLM judge; ``ev``: the profile's eval settings (generation,
    max_prompt_tokens, tie_threshold, llm_judge*, examples)."""
    from chatglm_rlhf.data.io import write_jsonl
    from chatglm_rlhf.evaluate.evaluate import generate_responses, judge_responses, length_stats
    from chatglm_rlhf.evaluate.judges import LLMJudge
    from chatglm_rlhf.evaluate.refusal import refusal_rate

    prompts = ctx.samples("eval_prompts")
    sft, tok = ctx.load("sft")

    def answers(model):
        return generate_responses(model, tok, prompts, ev.generation, ev.max_prompt_tokens, seed, progress)

    sft_resp, sft_fin = answers(sft)
    write_jsonl(ctx.out / "eval" / "sft_responses.jsonl",
                [{"id": s.id, "prompt": s.prompt, "response": r} for s, r in zip(prompts, sft_resp)])  # fmt: skip
    scorers = rm_judges(ctx, judges, ev.tie_threshold)
    out: dict[str, Any] = {
        "n_prompts": len(prompts),
        "judge_names": list(judges),
        "sft": {"lengths": length_stats(sft_resp, sft_fin), "refusal_rate": refusal_rate(sft_resp)},
    }
    responses: dict[str, list[str]] = {}
    for name in policies:
        policy, _ = ctx.load(name)
        pol_resp, pol_fin = answers(policy)
        del policy
        gc.collect()
        responses[name] = pol_resp
        res: dict[str, Any] = {"refusal_rate": refusal_rate(pol_resp)}
        verdicts: dict[str, list[str]] = {}
        for jname, judge in scorers.items():
            r = judge_responses(prompts, pol_resp, sft_resp, judge, (pol_fin, sft_fin), seed=seed)
            r.save(ctx.out / "eval" / name / jname)
            res[jname] = _brief(r.summary)
            res["lengths"] = r.summary["lengths"]["policy"]
            if jname != "proxy_rm":
                verdicts[jname] = [rec["verdict"] for rec in r.records]
        if len(verdicts) > 1:
            res["judges"] = ensemble_summary(verdicts, seed)
        res["eval"] = str(Path("eval") / name / "judge_rm" / "eval.json")  # the report's main table
        if ev.llm_judge and name in ev.llm_judge_policies:
            n = min(len(prompts), ev.llm_judge_prompts)
            llm = LLMJudge(sft, tok, max_prompt_tokens=ev.llm_judge_max_prompt_tokens, progress=progress)
            r = judge_responses(prompts[:n], pol_resp[:n], sft_resp[:n], llm, (pol_fin[:n], sft_fin[:n]),
                                seed=seed)  # fmt: skip
            r.save(ctx.out / "eval" / name / "llm")
            res["llm"] = {**_brief(r.summary), **llm.describe()}
            if res["llm"]["unparsed_replies"] >= 2 * res["llm"]["pairs"] > 0:
                print(f"[evaluate] warning: the LLM judge named neither answer in any of its "
                      f"{res['llm']['unparsed_replies']} replies about {name}: its win rate is ties, not a verdict")  # fmt: skip
        out[name] = res
    out["examples"] = _examples(prompts, sft_resp, responses.get("ppo", []), scorers["judge_rm"], ev.examples)
    return out


def _examples(prompts, sft_resp, ppo_resp, judge, n: int) -> list[dict]:
    """The first ``n`` held-out prompts (a seeded sample, not picked by outcome), with both answers and
    the judge RM's scores: harmful compliance before and after PPO."""
    n = min(n, len(ppo_resp))
    if not n:
        return []
    judge.compare_many(prompts[:n], list(ppo_resp[:n]), list(sft_resp[:n]))
    s_ppo, s_sft = judge.last_scores
    return [
        {"id": p.id, "history_turns": len(p.history), "prompt": p.prompt, "sft": a, "ppo": b,
         "judge_rm_sft": x, "judge_rm_ppo": y}
        for p, a, b, x, y in zip(prompts[:n], sft_resp[:n], ppo_resp[:n], s_sft, s_ppo)
    ]  # fmt: skip


def ceiling(ctx: RunContext, n: int, sampling, greedy, max_prompt_tokens: int, seed: int,
            prompts: str = "eval_prompts") -> dict:  # fmt: skip
    """Best-of-n from the SFT model's own samples, picked by gold and by the RM (evaluate/ceiling.py),
    on ``data/<prompts>.jsonl`` (the dev prompts while a world is being tuned)."""
    from chatglm_rlhf.evaluate.ceiling import best_of_n_ceiling

    sft, tok = ctx.load("sft")
    return best_of_n_ceiling(
        sft, tok, ctx.samples(prompts), ctx.scorer("rm"), ctx.gold(), sampling,
        dataclasses.replace(greedy, greedy=True), n=n, max_prompt_tokens=max_prompt_tokens, seed=seed,
    )  # fmt: skip


def probe(ctx: RunContext, models: list[str], max_new_tokens: int, bank: str = "v1") -> dict:
    """The capability probe for every model, greedy: the task's own items (``probe_items``) when it
    has them, else the built-in bank (``v1``: 40 questions, evaluate/capability.py; ``v2``: 216 with
    benign requests and format following, evaluate/probe_bank.py). A policy that wins its judges while
    it refuses or hedges more than SFT, or probes lower, gets a terminal warning (evaluate/health.py)."""
    from chatglm_rlhf.evaluate.capability import PROBE, run_probe
    from chatglm_rlhf.evaluate.health import evasiveness_warnings
    from chatglm_rlhf.evaluate.probe_bank import PROBE_V2
    from chatglm_rlhf.models.generation import GenerationSettings
    from chatglm_rlhf.utils.training import save_json

    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=20)
    if ctx.cfg.generation_backend != "sections":  # the run's sampler (this section is built here)
        settings = dataclasses.replace(settings, backend=ctx.cfg.generation_backend, vllm=ctx.cfg.vllm)
    items = (
        ctx.task.probe_items() if hasattr(ctx.task, "probe_items") else {"v1": PROBE, "v2": PROBE_V2}[bank]
    )
    out = {}
    for name in models:
        model, tok = ctx.load(name)
        r = run_probe(model, tok, settings, items)
        save_json(ctx.out / "eval" / f"probe_{name}.json", r)
        out[name] = {
            "overall": r["overall"], "macro": r["macro"], "correct": r["correct"], "total": r["total"],
            "by_kind": {k: v["accuracy"] for k, v in r["by_kind"].items()}, "by_split": r["by_split"],
            "refusal_hedge_rate": r["refusal_hedge_rate"], "items": str(Path("eval") / f"probe_{name}.json"),
        }  # fmt: skip
    metrics_file = ctx.out / "metrics.json"
    evaluated = json.loads(metrics_file.read_text()).get("evaluate", {}) if metrics_file.exists() else {}
    for line in evasiveness_warnings(out, evaluated):
        print(f"[probe] warning: {line}")
    return out
