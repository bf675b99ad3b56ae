"""Policy-optimisation algorithms, registered in one place that the pipeline and the CLI read.

An algorithm is a config dataclass and a train function plus one :func:`register` call (below, or in
any module a plug-in imports); its config becomes a section of every pipeline profile's config
(``<name>.key=value``, :func:`with_algorithm_sections`) and the report lists its policy. The online
RL algorithms (``ppo``, ``pg``) are sections of one loop (``policy/online``): a new advantage estimator
is a function and a registration in ``policy/online/estimators.py``, not an algorithm. The pipeline runs it as a stage through :func:`train_policy`; its ``cli``
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


register(Algorithm("ppo", "chatglm_rlhf.policy.online.config:PPOConfig", "chatglm_rlhf.policy.online.stage:train",
                   help="PPO with the reference baseline, KL penalty, ptx loss and the prompt filter",
                   cli="chatglm_rlhf.cli.ppo_cmd"))  # fmt: skip
register(Algorithm("dpo", "chatglm_rlhf.policy.dpo.config:DPOConfig", "chatglm_rlhf.policy.dpo.stage:train",
                   help="DPO / IPO / conservative DPO on RM-labelled pairs of SFT samples",
                   cli="chatglm_rlhf.cli.dpo_cmd"))  # fmt: skip
register(Algorithm("pg", "chatglm_rlhf.policy.online.config:PGConfig", "chatglm_rlhf.policy.online.stage:train",
                   help="critic-free online RL: GRPO, Dr. GRPO, RLOO, REINFORCE++, ReMax or the reference baseline (estimator=)",
                   cli="chatglm_rlhf.cli.pg_cmd"))  # fmt: skip


# --- the pipeline's config: a section per registered algorithm ------------------------------------------

DEFAULT_FILLED = ("model", "output_dir")  # what every policy stage sets from the run
_SECTIONED: dict[tuple[type, tuple[str, ...]], type] = {}


def pipeline_filled(config_class: type) -> tuple[str, ...]:
    """The keys of an algorithm's section that a pipeline fills in (the SFT model, the run's folders,
    data and reward model): ``PIPELINE_FILLED`` on its config class, else ``model`` and ``output_dir``."""
    return tuple(getattr(config_class, "PIPELINE_FILLED", DEFAULT_FILLED))


def with_algorithm_sections(cls: type) -> type:
    """``cls`` (a profile's config dataclass) with a section for every registered algorithm it does not
    declare, at the algorithm config's class defaults: ``<name>.key=value`` and a recipe's ``<name>:``
    reach a plug-in's settings as they reach ``ppo``'s. The class itself when nothing is missing."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    missing = tuple(sorted(n for n in ALGORITHMS if n not in names))
    if not missing:
        return cls
    key = (cls, missing)
    if key not in _SECTIONED:
        extra = [(n, ALGORITHMS[n].config_class(), dataclasses.field(default_factory=ALGORITHMS[n].config_class(),
                  metadata={"help": ALGORITHMS[n].help})) for n in missing]  # fmt: skip
        _SECTIONED[key] = dataclasses.make_dataclass(cls.__name__, extra, bases=(cls,))
    return _SECTIONED[key]


def check_not_filled(cls: type, tree: dict[str, Any], where: str) -> None:
    """A recipe or override that sets a key the pipeline fills in (``PIPELINE_FILLED`` of a section's
    class of profile config ``cls``; every algorithm's) is an error naming the key: it would otherwise be
    replaced without a word."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    classes = {
        f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])
    }
    classes.update({n: a.config_class() for n, a in ALGORITHMS.items()})
    for name, section_cls in classes.items():
        section = tree.get(name)
        if (
            not isinstance(section, dict)
            or not hasattr(section_cls, "PIPELINE_FILLED")
            and name not in ALGORITHMS
        ):
            continue
        for key in pipeline_filled(section_cls):
            if key in section:
                raise ConfigError(
                    f"{where}: {name}.{key} is filled in by the pipeline (from the run's model, folders and "
                    "data); remove it (the stage's standalone command takes it)"
                )
