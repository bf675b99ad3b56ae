"""What every stage of a run reads: the config, the task, the run folder and a few loaders.

A stage is a function ``stage(ctx: RunContext) -> metrics``; the profile (:mod:`pipeline.profiles`)
lists the stages, and :mod:`pipeline.runner` runs them resumably. Layout of a run folder::

    DIR/config.json  DIR/metrics.json  DIR/report.html  DIR/stages/NAME.done.json
    DIR/data/        the task's files (see tasks/base.py) and collected comparisons
    DIR/models/      every model (base, sft, rm, judge_rm, ppo, dpo, ablations), loadable by from_pretrained
    DIR/<stage>/     a stage's own files (filter/, rm/, eval/ ...)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatglm_rlhf.errors import UserError

KEPT = "kept.json"  # in models/<policy>/: which of its checkpoints the later stages use


@dataclass
class RunContext:
    cfg: Any  # the profile's config (a dataclass)
    out: Path
    task: Any  # a tasks.base.Task
    scorer_batch_size: int | None = None  # RewardScorer's batch size (None: its default)
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def models(self) -> Path:
        return self.out / "models"

    @property
    def sft_path(self) -> Path:
        """The SFT (policy) checkpoint: the one the checkpoint stage chose, else ``models/sft``."""
        info = self.data / "checkpoint.json"
        if info.exists():
            return Path(json.loads(info.read_text())["path"])
        if (self.models / "sft").exists():
            return self.models / "sft"
        raise UserError(f"{self.out}: no SFT model yet (run the sft or checkpoint stage first)")

    def model_path(self, name: str) -> Path:
        """``models/<name>``, or the checkpoint its ``kept.json`` names (the PPO checkpoint chosen on the
        dev prompts by the ``ppo_curve`` stage): every later stage evaluates the kept one."""
        if name == "sft":
            return self.sft_path
        kept = self.models / name / KEPT
        if kept.exists():
            return self.models / name / json.loads(kept.read_text())["path"]
        return self.models / name

    def gold(self):
        """The task's gold judge, or None."""
        if "gold" not in self._cache:
            self._cache["gold"] = self.task.gold_judge()
        return self._cache["gold"]

    def gold_fn(self, sample, a: str, b: str) -> str:
        """The gold judge's verdict; comparisons carry no gold info, so look the sample up by id."""
        if "gold_samples" not in self._cache:
            self._cache["gold_samples"] = {
                s.id: s for split in ("pref", "rl", "eval") for s in self.prompt_file(f"{split}_prompts")
            }
        return self.gold().compare(self._cache["gold_samples"].get(sample.id, sample), a, b)

    def samples(self, name: str):
        from chatglm_rlhf.data.io import read_samples

        return read_samples(self.data / f"{name}.jsonl", strict=True)[0]

    def prompt_file(self, name: str):
        """``samples(name)``, or [] when the task has no such file."""
        return self.samples(name) if (self.data / f"{name}.jsonl").exists() else []

    def comparisons(self, name: str):
        from chatglm_rlhf.data.formats import load_comparisons

        return load_comparisons(self.data / f"{name}.jsonl")[0]

    def load(self, name_or_path: str | Path):
        """(model, tokenizer) in fp32 on the run's device: a model name under models/ ("sft" = the SFT model)
        or a path."""
        from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer

        path = self.model_path(name_or_path) if isinstance(name_or_path, str) else name_or_path
        trust = self.trust_remote_code
        return (load_causal_lm(str(path), dtype="fp32", device=self.device, trust_remote_code=trust),
                load_tokenizer(str(path), trust_remote_code=trust))  # fmt: skip

    @property
    def device(self) -> str:
        """The run's device (``device``, resolved when the config was loaded; cpu for configs without it)."""
        device = getattr(self.cfg, "device", "cpu")
        return "cpu" if device == "auto" else device  # auto is resolved at load; a config built by hand: cpu

    @property
    def trust_remote_code(self) -> bool:
        return bool(getattr(self.cfg, "trust_remote_code", False))

    def scorer(self, name: str):
        from chatglm_rlhf.reward.scorer import RewardScorer

        kw = {} if self.scorer_batch_size is None else {"batch_size": self.scorer_batch_size}
        kw["trust_remote_code"] = self.trust_remote_code
        return RewardScorer.from_pretrained(str(self.models / name), device=self.device, **kw)

    def ptx_examples(self):
        """PPO's ptx data: ``data/ptx.jsonl`` (clean demonstrations) when the task wrote one, else the SFT
        training part of :meth:`sft_examples`."""
        from chatglm_rlhf.policy.sft import load_sft_examples

        ptx = self.data / "ptx.jsonl"
        return load_sft_examples(str(ptx)) if ptx.exists() else self.sft_examples()[0]

    def sft_examples(self):
        """(train, held-out) SFT examples: ``sft_heldout.jsonl`` when the task wrote one, else the first
        10% of ``sft.jsonl`` (the slice the SFT stage held out)."""
        from chatglm_rlhf.policy.sft import load_sft_examples

        examples = load_sft_examples(str(self.data / "sft.jsonl"))
        held = self.data / "sft_heldout.jsonl"
        if held.exists():
            return examples, load_sft_examples(str(held))
        n_eval = max(1, len(examples) // 10)
        return examples[n_eval:], examples[:n_eval]
