"""Policy-optimisation algorithms, registered in one place that the pipeline and the CLI read.

An algorithm is a package ``policy/<name>/`` (config, losses, trainer, stage) plus one line in
:data:`ALGORITHMS` below. The pipeline runs it as a stage through :func:`train_policy`; its ``cli``
module (if any) adds a ``chatglm-rlhf <name>`` command. Imports are lazy (``"module:attr"`` strings), so
reading the registry loads no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.utils.plugins import load_object


@dataclass
class PolicyInputs:
    """What a pipeline stage hands an algorithm: the SFT model, where to save, data and a reward."""

    sft_path: str
    output_dir: str
    prompts: list[DialogueSample]
    sft_examples: list[tuple[DialogueSample, str]]  # ptx data (algorithms that use it)
    heldout_examples: list[tuple[DialogueSample, str]]  # held-out SFT loss before / after
    scorer: Any  # reward.scorer protocol: score(samples, responses) -> list[float]
    reward_model: str = ""  # the scorer's checkpoint, when it is one (a critic may start from it)
    progress: bool = True


@dataclass(frozen=True)
class Algorithm:
    name: str
    config: str  # "module:Class", the stage config dataclass
    train: str  # "module:function", train(inputs: PolicyInputs, cfg) -> metrics (a JSON-able dict)
    help: str = ""
    cli: str | None = None  # "module" with register(sub) for a chatglm-rlhf subcommand
    extra: dict[str, Any] = field(default_factory=dict)

    def config_class(self) -> type:
        return load_object(self.config, f"algorithm {self.name} config")

    def trainer(self) -> Callable[[PolicyInputs, Any], dict[str, Any]]:
        return load_object(self.train, f"algorithm {self.name} train")


ALGORITHMS: dict[str, Algorithm] = {}


def register(algo: Algorithm) -> Algorithm:
    """Add (or replace) an algorithm; returns it, so a module can register at import."""
    ALGORITHMS[algo.name] = algo
    return algo


def get(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ConfigError(f"algorithms: unknown {name!r} (choose from {', '.join(sorted(ALGORITHMS))})")
    return ALGORITHMS[name]


def train_policy(name: str, inputs: PolicyInputs, cfg: Any) -> dict[str, Any]:
    """Train algorithm ``name`` with stage config ``cfg`` (an instance of its config class)."""
    Path(inputs.output_dir).mkdir(parents=True, exist_ok=True)
    return get(name).trainer()(inputs, cfg)


register(Algorithm("ppo", "chatglm_rlhf.policy.ppo.config:PPOConfig", "chatglm_rlhf.policy.ppo.stage:train",
                   help="PPO with the reference baseline, KL penalty, ptx loss and the prompt filter",
                   cli="chatglm_rlhf.cli.ppo_cmd"))  # fmt: skip
register(Algorithm("dpo", "chatglm_rlhf.policy.dpo.config:DPOConfig", "chatglm_rlhf.policy.dpo.stage:train",
                   help="DPO / IPO / conservative DPO on RM-labelled pairs of SFT samples",
                   cli="chatglm_rlhf.cli.dpo_cmd"))  # fmt: skip
register(Algorithm("pg", "chatglm_rlhf.policy.pg.config:PGConfig", "chatglm_rlhf.policy.pg.stage:train",
                   help="critic-free PG: GRPO, Dr. GRPO, RLOO, REINFORCE++ or the reference baseline (estimator=)",
                   cli="chatglm_rlhf.cli.pg_cmd"))  # fmt: skip
