"""Load a whole-pipeline config (profile, recipe, overrides) and run its stages resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chatglm_rlhf.pipeline.profiles import all_profiles
from chatglm_rlhf.pipeline.profiles.base import (
    Profile,
    StageBuilder,
    apply_device,
    apply_generation_backend,
    check_choices,
)


def load_pipeline_config(recipe: str | None, overrides: list[str], profile: str | None = None,
                         default: str = "default") -> Any:  # fmt: skip
    """The profile's defaults, then the recipe, then ``key=value`` overrides; checked before any stage.

    The profile comes from the argument, a ``profile=`` override, the recipe's ``profile:`` or
    ``default``, in that order."""
    from chatglm_rlhf.config import load_profiled_config, parse_overrides, read_yaml
    from chatglm_rlhf.policy.registry import check_not_filled, with_algorithm_sections

    name = profile_name(recipe, overrides, profile, default)
    p = get_profile(name)
    cls = with_algorithm_sections(p.config)
    if recipe:
        check_not_filled(cls, read_yaml(recipe), str(recipe))
    check_not_filled(cls, parse_overrides(overrides), "command line")
    cfg, where = load_profiled_config(cls, {name: p.defaults}, name, recipe, overrides, name)
    check_choices(cfg, p.supported_ablations, where)
    p.validate(cfg, where)
    apply_generation_backend(cfg)
    apply_device(cfg)
    return cfg


def profile_name(recipe: str | None, overrides: list[str], profile: str | None = None,
                 default: str | None = None) -> str | None:  # fmt: skip
    from chatglm_rlhf.config import parse_overrides, read_yaml

    if profile:
        return profile
    cli = parse_overrides(overrides)
    if "profile" in cli:
        return str(cli["profile"])
    data = read_yaml(recipe) if recipe else {}
    return str(data["profile"]) if data.get("profile") else default


def get_profile(name: str) -> Profile:
    from chatglm_rlhf.errors import ConfigError

    profiles = all_profiles()
    if name not in profiles:
        raise ConfigError(f"profile must be one of {sorted(profiles)}, got {name!r}")
    return profiles[name]


def default_config(name: str) -> Any:
    """The config a profile runs with when nothing overrides it (for ``--help``)."""
    from chatglm_rlhf.config import from_dict
    from chatglm_rlhf.policy.registry import with_algorithm_sections

    p = get_profile(name)
    return from_dict(
        with_algorithm_sections(p.config), {**p.defaults, "profile": name}, where=f"profile {name}"
    )


def run_pipeline(
    cfg: Any, out: str | Path, from_stage: str | None = None, until: str | None = None
) -> dict[str, Any]:
    """Every stage of ``cfg``'s profile into ``out`` (up to ``until``); finished stages are skipped (see
    runner)."""
    import torch

    from chatglm_rlhf.pipeline.context import RunContext
    from chatglm_rlhf.pipeline.runner import run_stages
    from chatglm_rlhf.pipeline.stages.report import finish
    from chatglm_rlhf.utils.console import quiet_run
    from chatglm_rlhf.utils.training import save_json

    p = get_profile(cfg.profile)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "config.json", cfg)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        ctx = RunContext(cfg, out, p.make_task(cfg), scorer_batch_size=p.scorer_batch_size)
        stages = p.build(ctx)
        policies = StageBuilder(ctx).evaluated()
        with quiet_run():  # one line per stage unless --verbose
            metrics = run_stages(out, stages, from_stage=from_stage, until=until)
    finally:
        torch.set_num_threads(threads)
    if "paused_after" in metrics:
        return metrics
    run = {
        "name": p.title,
        "profile": p.name,
        "algorithms": list(cfg.algorithms),
        "policies": policies,
        "prompts": getattr(ctx.task, "prompts_label", ""),  # what the report calls the task's prompts
        "wiring_check": p.wiring_check,  # a smoke profile: the report and the terminal say so
    }
    return finish(out, metrics, run)
