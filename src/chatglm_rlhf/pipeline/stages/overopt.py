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


def policy_curve(ctx: RunContext, policy: str, ev, judges: tuple[str, ...], select_by: str, seed: int,
              progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Win rates vs SFT (ties ½) by the proxy RM and each judge at every checkpoint of ``policy`` on
    ``data/dev_prompts.jsonl``; the kept checkpoint by ``select_by`` (judges | proxy | last)."""
    from chatglm_rlhf.evaluate.evaluate import generate_responses, judge_responses
    from chatglm_rlhf.evaluate.overopt import choose_checkpoint, judges_mean
    from chatglm_rlhf.models.loading import load_causal_lm
    from chatglm_rlhf.pipeline.stages.evaluate import rm_judges

    prompts = ctx.samples("dev_prompts")
    policy_dir = ctx.models / policy
    (policy_dir / KEPT).unlink(missing_ok=True)
    results = sorted(policy_dir.glob("*_result.json"))  # ppo_result.json, pg_result.json, ...
    final_step = json.loads(results[0].read_text()).get("steps", 0) if results else 0
    sft, tok = ctx.load("sft")

    def answers(model):
        return generate_responses(model, tok, prompts, ev.generation, ev.max_prompt_tokens, seed, progress)

    sft_resp, sft_fin = answers(sft)
    del sft
    scorers = rm_judges(ctx, judges, ev.tie_threshold)
    points = []
    for step, folder in checkpoints(policy_dir, final_step):
        model = load_causal_lm(str(folder), dtype="fp32", device="cpu")
        resp, fin = answers(model)
        del model
        gc.collect()
        point: dict[str, Any] = {"step": step, "unfinished_rate": sum(not f for f in fin) / max(len(fin), 1)}
        for jname, judge in scorers.items():
            r = judge_responses(prompts, resp, sft_resp, judge, (fin, sft_fin), seed=seed)
            point[jname] = r.summary["overall"]["win_rate"]
        point["judges_mean"] = judges_mean(point, judges)
        points.append(point)
        print(f"[{policy}_curve] step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in point.items()
                                                          if k != "step" and v is not None))  # fmt: skip
    best = choose_checkpoint(points, select_by, judges)  # type: ignore[arg-type]
    kept_step, kept_dir = checkpoints(policy_dir, final_step)[best]
    atomic_write_text(policy_dir / KEPT, json.dumps({"step": kept_step, "path": str(kept_dir.relative_to(policy_dir)),
                                               "select_by": select_by}))  # fmt: skip
    return {"dev_prompts": len(prompts), "judges": list(judges), "select_by": select_by, "points": points,
            "kept_step": kept_step, "final_step": final_step}  # fmt: skip


policy_curve.fingerprint_name = (
    "ppo_curve"  # its name when it served PPO alone: finished runs keep their markers
)
