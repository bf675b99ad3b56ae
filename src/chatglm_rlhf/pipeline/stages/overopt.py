"""The over-optimisation curve of an online RL run and the checkpoint it keeps, on the dev prompts.

Every snapshot the policy's trainer wrote (``<section>.snapshot_every``: ``models/<policy>/snapshots/step_N``) and the final
policy answer the dev prompts (greedy, as the evaluation does); the proxy RM and each judge RM compare
them with SFT's answers. The checkpoint kept (``models/<policy>/kept.json``, which every later stage
loads) is chosen on these dev prompts, never on the evaluation prompts (evaluate/overopt.py).
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatglm_rlhf.pipeline.context import KEPT, RunContext
from chatglm_rlhf.utils.files import atomic_write_text


def checkpoints(policy_dir: Path, final_step: int) -> list[tuple[int, Path]]:
    """(step, folder) of every snapshot in step order, then the final policy."""
    snaps = []
    for d in (policy_dir / "snapshots").glob("step_*"):
        m = re.fullmatch(r"step_(\d+)", d.name)
        if m and (d / "config.json").exists():
            snaps.append((int(m.group(1)), d))
    return [*sorted(snaps), (final_step, policy_dir)]


def final_step(policy_dir: Path) -> int:
    """The steps the policy's trainer ran (its ``<section>_result.json``; 0 when there is none)."""
    results = sorted(policy_dir.glob("*_result.json"))  # ppo_result.json, pg_result.json, ...
    return json.loads(results[0].read_text()).get("steps", 0) if results else 0


def walk_checkpoints(ctx: RunContext, policy: str, generation, max_prompt_tokens: int | None, seed: int,
                     progress: bool, judge: Callable[..., dict[str, Any]], tag: str) -> list[dict[str, Any]]:  # fmt: skip
    """One point per checkpoint of ``policy`` (snapshots, then the final policy): its greedy answers to
    ``data/dev_prompts.jsonl`` next to SFT's, measured by ``judge(prompts, resp, fin, sft_resp, sft_fin)``
    (a dict merged into the point). The one loop every curve shares (the real profile's judge RMs, the
    demo's proxy and gold), so that they answer the same prompts the same way."""
    from chatglm_rlhf.evaluate.evaluate import generate_responses
    from chatglm_rlhf.models.loading import load_causal_lm

    prompts = ctx.samples("dev_prompts")
    policy_dir = ctx.models / policy
    sft, tok = ctx.load("sft")

    def answers(model):
        return generate_responses(model, tok, prompts, generation, max_prompt_tokens, seed, progress)

    sft_resp, sft_fin = answers(sft)
    del sft
    points = []
    for step, folder in checkpoints(policy_dir, final_step(policy_dir)):
        model = load_causal_lm(str(folder), dtype="fp32", device="cpu")
        resp, fin = answers(model)
        del model
        gc.collect()
        point: dict[str, Any] = {"step": step, "unfinished_rate": sum(not f for f in fin) / max(len(fin), 1)}
        point.update(judge(prompts, resp, fin, sft_resp, sft_fin))
        points.append(point)
        print(f"[{tag}] step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in point.items()
                                                   if k != "step" and isinstance(v, float)))  # fmt: skip
    return points


def policy_curve(ctx: RunContext, policy: str, ev, judges: tuple[str, ...], select_by: str, seed: int,
              progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Win rates vs SFT (ties ½) by the proxy RM and each judge at every checkpoint of ``policy`` on
    ``data/dev_prompts.jsonl``; the kept checkpoint by ``select_by`` (judges | proxy | last)."""
    from chatglm_rlhf.evaluate.evaluate import judge_responses
    from chatglm_rlhf.evaluate.overopt import choose_checkpoint, judges_mean
    from chatglm_rlhf.pipeline.stages.evaluate import rm_judges

    policy_dir = ctx.models / policy
    (policy_dir / KEPT).unlink(missing_ok=True)
    scorers = rm_judges(ctx, judges, ev.tie_threshold)

    def judge(prompts, resp, fin, sft_resp, sft_fin) -> dict[str, Any]:
        point: dict[str, Any] = {}
        for jname, j in scorers.items():
            r = judge_responses(prompts, resp, sft_resp, j, (fin, sft_fin), seed=seed)
            point[jname] = r.summary["overall"]["win_rate"]
        point["judges_mean"] = judges_mean(point, judges)
        return point

    points = walk_checkpoints(ctx, policy, ev.generation, ev.max_prompt_tokens, seed, progress, judge,
                              f"{policy}_curve")  # fmt: skip
    final = final_step(policy_dir)
    best = choose_checkpoint(points, select_by, judges)  # type: ignore[arg-type]
    kept_step, kept_dir = checkpoints(policy_dir, final)[best]
    atomic_write_text(policy_dir / KEPT, json.dumps({"step": kept_step, "path": str(kept_dir.relative_to(policy_dir)),
                                               "select_by": select_by}))  # fmt: skip
    return {"dev_prompts": len(ctx.samples("dev_prompts")), "judges": list(judges), "select_by": select_by,
            "points": points, "kept_step": kept_step, "final_step": final}  # fmt: skip


def step_values(metrics_path: Path, key: str) -> dict[int, float]:
    """step -> ``key`` from a trainer's per-step log (``metrics.jsonl``); {} when there is no log."""
    from chatglm_rlhf.utils.training import read_metrics  # the log's one reader (a torn last line)

    return {int(r["step"]): float(r[key]) for r in read_metrics(metrics_path) if key in r and "step" in r}


def gold_curve(ctx: RunContext, policy: str, generation, seed: int, rm: str = "rm",
               ensemble: list[str] | None = None, lam: float = 0.0, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """The demo's over-optimisation curve (no checkpoint is kept: evaluate uses the final policy): at
    every checkpoint of ``policy``, on the dev prompts, the win rate vs SFT and the mean score by the
    proxy RM (``rm``) and by the task's gold judge; with ``ensemble``, also those reward models' mean,
    std and ``mean − lam·std`` (the reward the pessimistic twin climbed); the training KL at that step.
    Proxy up while gold is flat or falls is over-optimisation (Gao et al. 2022)."""
    from chatglm_rlhf.errors import UserError
    from chatglm_rlhf.evaluate.evaluate import judge_responses
    from chatglm_rlhf.evaluate.judges import GoldJudgeAdapter, RewardJudge
    from chatglm_rlhf.evaluate.overopt import ensemble_point, gold_drop
    from chatglm_rlhf.pipeline.stages.policy import ensemble_scorer

    if ctx.gold() is None:
        raise UserError(
            f"{policy}_gold_curve: the task has no gold judge (the real profile's curve is {policy}_curve)"
        )
    judges = {"gold": GoldJudgeAdapter(ctx.gold()), "proxy_rm": RewardJudge(ctx.scorer(rm))}
    members = ensemble_scorer(ctx, ensemble, lam) if ensemble else None
    sft: dict[str, Any] = {}

    def judge(prompts, resp, fin, sft_resp, sft_fin) -> dict[str, Any]:
        point: dict[str, Any] = {}
        for key, j in judges.items():
            r = judge_responses(prompts, resp, sft_resp, j, (fin, sft_fin), seed=seed)
            point[key] = r.summary["overall"]["win_rate"]
            point[f"{key}_score"] = r.summary.get("mean_score", {}).get("policy")
            sft[f"sft_{key}_score"] = r.summary.get("mean_score", {}).get("baseline")
        if members is not None:
            point.update(ensemble_point(members.score_members(prompts, resp), lam))
            if "sft_ensemble_reward" not in sft:  # SFT's answers are the same at every checkpoint
                at_sft = ensemble_point(members.score_members(prompts, sft_resp), lam)
                sft["sft_ensemble_reward"] = at_sft["ensemble_reward"]
        return point

    points = walk_checkpoints(ctx, policy, generation, None, seed, progress, judge, f"{policy}_gold_curve")
    kl = step_values(ctx.models / policy / "metrics.jsonl", "kl")
    for p in points:
        p["kl"] = kl.get(p["step"])
    return {"policy": policy, "dev_prompts": len(ctx.samples("dev_prompts")), "rm": rm,
            "ensemble": list(ensemble or []), "lam": lam if ensemble else None, **sft, "points": points,
            "final_step": final_step(ctx.models / policy), "gold_drop": gold_drop(points)}  # fmt: skip


policy_curve.fingerprint_name = (
    "ppo_curve"  # its name when it served PPO alone: finished runs keep their markers
)
