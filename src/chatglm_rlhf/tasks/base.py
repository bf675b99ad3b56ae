"""What a run needs from a data world: protocols only (no task is imported here).

A *task* supplies the data of a run and, optionally, ground truth. The pipeline's stages
(:mod:`chatglm_rlhf.pipeline.stages`) read only these protocols, so the demo world
(``tasks/demo``), HH-RLHF (``tasks/hh``) and a user's own files (``tasks/files``) run through the same
stages. Files a task writes into the run's ``data/`` folder (our JSONL formats, :mod:`chatglm_rlhf.data`):

    sft.jsonl                     SFT demonstrations (one response each): SFT training and PPO's ptx
    sft_heldout.jsonl             (optional) held-out demonstrations: the capability probe of ptx;
                                  without it the first 10% of sft.jsonl is held out
    rl_prompts.jsonl              prompts for PPO / DPO (with history and category)
    eval_prompts.jsonl            held-out prompts for evaluation, never trained on
    pref_prompts.jsonl            (annotated tasks) prompts whose SFT samples are compared
    rm_train.jsonl, rm_eval.jsonl (tasks with preferences) comparisons for the proxy RM and its eval
    judge_train.jsonl             (tasks without a gold judge) comparisons for the judge RM
    heldout.jsonl                 (tasks without a gold judge) comparisons never trained on
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from chatglm_rlhf.data.schema import Comparison, DialogueSample


class Score(Protocol):
    total: float


@runtime_checkable
class GoldJudge(Protocol):
    """Ground truth: a score per answer and a verdict per pair (the demo world has one; real data not)."""

    tie_margin: float

    def score(self, sample: DialogueSample, response: str) -> Score: ...

    def score_many(self, samples: Sequence[DialogueSample], responses: Sequence[str]) -> list[Score]: ...

    def compare(self, sample: DialogueSample, a: str, b: str) -> str:  # "a" | "b" | "tie"
        ...


class Annotators(Protocol):
    """Labels k candidate responses per prompt pairwise (simulated annotators; humans use the app)."""

    def annotate(self, candidates: Sequence[DialogueSample], overlap: int) -> list[Comparison]: ...


@runtime_checkable
class Task(Protocol):
    """A data world. ``write_data`` fills ``data_dir`` with the files listed in this module's docstring
    that the task has, and returns its metrics (counts, sources)."""

    name: str

    def write_data(self, data_dir: Path) -> dict[str, Any]: ...

    def gold_judge(self) -> GoldJudge | None:
        """The ground-truth judge, or None (then a judge RM trained on ``judge_train`` evaluates)."""
        ...

    def annotators(self) -> Annotators | None:
        """Who compares SFT candidates (None: the preferences come with the data, or from people)."""
        ...


# Optional task methods the stages use when a task has them (checked with ``hasattr``):
#   corpus(n) -> list[str]                      texts to train a tiny model's tokenizer on (``base`` stage)
#   rm_probes(scorer, eval_prompts) -> dict     extra reward-model probes (the demo's filler ties)
#   gold_reward() -> Scorer                     the gold judge as a reward (the ``gold_reward`` ablation)
