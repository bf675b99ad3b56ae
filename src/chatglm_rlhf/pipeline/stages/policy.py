"""Policy stages: any algorithm in :mod:`chatglm_rlhf.policy.registry`, trained from the SFT model
against a reward model (or another scorer, for the gold-reward ablation)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from chatglm_rlhf.pipeline.context import RunContext


def policy(ctx: RunContext, algorithm: str, name: str, cfg, rm: str = "rm", scorer=None,
           prompt_limit: int = 0, progress: bool = True, match_scale: bool = False, init: str = "",
           ensemble: list[str] | None = None, lam: float = 0.0, **changes: Any) -> dict[str, Any]:  # fmt: skip
    """Train ``algorithm`` into ``models/<name>`` on ``data/rl_prompts.jsonl`` (the first ``prompt_limit``
    when > 0) with ``cfg`` (its stage config) changed by ``changes``; the reward is ``models/<rm>`` unless
    a ``scorer`` is given (its critic, if any, still starts from that RM). ``match_scale``: the scorer is
    first rescaled to the RM's spread on the SFT model's candidate answers (reward/scale.py says why).
    ``init``: start from ``models/<init>`` (a feedback round's previous policy) with the SFT model as the
    reference (online algorithms: ``reference_model``). ``ensemble``: the reward is those reward models'
    ``mean − lam·std`` (reward/ensemble.py), built here because the members train in earlier stages of
    the same run (the stage's settings carry their names and ``lam``)."""
    from chatglm_rlhf.pipeline.context import KEPT
    from chatglm_rlhf.pipeline.runner import trainer_config
    from chatglm_rlhf.policy.registry import PolicyInputs, train_policy

    (ctx.models / name / KEPT).unlink(missing_ok=True)  # a new policy: the old choice of checkpoint is void
    heldout = ctx.sft_examples()[1]
    prompts = ctx.samples("rl_prompts")
    if prompt_limit:
        prompts = prompts[:prompt_limit]
    scale_info = None
    if ensemble:
        scorer = ensemble_scorer(ctx, ensemble, lam, given=scorer)
    if scorer is not None and match_scale:
        scorer, scale_info = _scaled_to_rm(ctx, scorer, rm)
    if init:
        changes = {**changes, "reference_model": str(ctx.sft_path)}
    inputs = PolicyInputs(
        sft_path=str(ctx.models / init if init else ctx.sft_path), output_dir=str(ctx.models / name), prompts=prompts, sft_examples=ctx.ptx_examples(),
        heldout_examples=heldout, scorer=scorer if scorer is not None else ctx.scorer(rm),
        reward_model=str(ctx.models / rm), progress=progress,
    )  # fmt: skip
    cfg = trainer_config(dataclasses.replace(cfg, **changes) if changes else cfg, ctx.models / name)
    result = train_policy(algorithm, inputs, cfg)
    if (ctx.models / name / "metrics.jsonl").exists():  # the per-step log: the report's curves
        result["metrics_path"] = str(Path("models") / name / "metrics.jsonl")
    if scale_info is not None:
        result["reward_scale"] = scale_info
    if ensemble:
        result["ensemble"] = {"members": list(ensemble), "lam": lam}
    return result


def ensemble_scorer(ctx: RunContext, members: list[str], lam: float, given=None):
    """``EnsembleScorer`` over ``models/<member>`` for each member; errors name what is missing."""
    from chatglm_rlhf.errors import ConfigError, UserError
    from chatglm_rlhf.reward.ensemble import EnsembleScorer

    if given is not None:
        raise ConfigError("a policy stage takes a scorer or an ensemble, not both")
    if lam < 0:
        raise ConfigError(f"ensemble.lam: must be >= 0, got {lam} (a negative lam pays for disagreement)")
    missing = [m for m in members if not (ctx.models / m / "config.json").exists()]
    if missing:
        raise UserError(
            f"{ctx.models}: ensemble member(s) {', '.join(missing)} not trained (their rm stages run first)"
        )
    return EnsembleScorer([ctx.scorer(m) for m in members], lam)


CALIBRATION_RESPONSES = 600  # the SFT model's candidate answers the two spreads are measured on


def _scaled_to_rm(ctx: RunContext, scorer, rm: str):
    from chatglm_rlhf.errors import UserError
    from chatglm_rlhf.reward.scale import calibration_pairs, match_scale

    samples, responses = calibration_pairs(ctx.prompt_file("candidates"), CALIBRATION_RESPONSES)
    if len(responses) < 2:
        raise UserError(
            f"{ctx.data / 'candidates.jsonl'}: match_scale needs the SFT model's candidate answers"
        )
    return match_scale(scorer, ctx.scorer(rm), samples, responses)
