"""What the paper does once before online training, and the prompt bookkeeping around it.

* The **prompt filter**: drop prompts whose k sampled responses all get about the same reward (they
  carry no learning signal).
* The **reference baseline**: the SFT model's own answer to every prompt, scored once and cached, so
  the reward is ``r(x, y) - r(x, y_ref)``.

Both are computed only for the prompts a run draws (:func:`prompts_for_run`), cached in the output
folder and reused on resume.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.generation import Generated, GenerationSettings, decode_response, make_generator
from chatglm_rlhf.policy.models import ActorWithReference
from chatglm_rlhf.reward.protocol import Scorer
from chatglm_rlhf.utils.distributed import Ranks
from chatglm_rlhf.utils.files import atomic_write_text
from chatglm_rlhf.utils.training import epoch_order


def score_checked(scorer: Scorer, samples: list[DialogueSample], responses: list[str]) -> torch.Tensor:
    scores = scorer.score(samples, responses)
    if len(scores) != len(samples):
        raise ValueError(f"scorer returned {len(scores)} scores for {len(samples)} responses")
    return torch.tensor([float(s) for s in scores], dtype=torch.float32)


def prompt_key(sample: DialogueSample, ids: list[int]) -> str:
    """Cache key: the sample id plus a hash of its prompt tokens (ids alone may repeat across files)."""
    digest = hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:16]
    return f"{sample.id}|{digest}"


@dataclass
class PromptSet:
    samples: list[DialogueSample]
    ids: list[list[int]]
    keys: list[str]


def _cache_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The cached rows by key. A line cut short (a run killed while appending) is left out and its
    prompt scored again: a cache loses nothing by recomputing."""
    if not path.exists():
        return {}
    rows, torn = {}, 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            torn += 1
            continue
        if row is not None:
            rows[row["key"]] = row
    if torn:
        print(f"{path}: {torn} unreadable line(s) (a write cut short); those prompts are scored again")
    return rows


def reference_baseline(
    models: ActorWithReference,
    prompts: PromptSet,
    scorer: Scorer,
    settings: GenerationSettings,
    cache_path: Path,
    seed: int,
    k: int = 1,
    progress: bool = False,
    ranks: Ranks | None = None,
) -> dict[str, float]:
    """The score of the SFT model's own answer to every prompt, keyed by :func:`prompt_key`.

    ``k = 1`` is the paper's ``r(x, y_ref)``: one answer from the frozen reference (greedy when
    ``settings.greedy``). ``k > 1`` averages the scores of k answers (a lower-variance baseline; sample
    with ``greedy=False``, or the k answers are identical). Answers are generated once and written to
    ``cache_path`` (JSONL: key, id, responses, scores, score = their mean); prompts already in the file
    are reused, so resuming never regenerates them. With several ``ranks`` each answers its share of
    the missing prompts, every rank gets every score, and only the main process writes the file.
    """
    ranks = ranks or Ranks()
    cached = _cache_rows(cache_path)
    todo = [i for i, key in enumerate(prompts.keys) if key not in cached]
    if todo:
        mine, rows = ranks.share(todo), []
        if mine:
            with models.reference_lm() as ref:
                gens, texts, scores = _sample_and_score(
                    ref,
                    models.tokenizer,
                    prompts,
                    mine,
                    scorer,
                    k,
                    settings,
                    ranks.seed(seed),
                    progress and ranks.is_main,
                )
            for n, (i, group) in enumerate(zip(mine, gens)):
                row = {"key": prompts.keys[i], "id": prompts.samples[i].id, "score": float(scores[n].mean())}
                row.update(responses=texts[n * k : (n + 1) * k], scores=scores[n].tolist())
                row["finished"] = [g.finished for g in group]
                rows.append((i, row))
        rows = [row for _, row in sorted(ranks.gather_objects(rows), key=lambda r: r[0])]
        if ranks.is_main:  # one writer; every rank holds the same rows
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            with open(cache_path, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        cached.update((row["key"], row) for row in rows)
    return {key: float(cached[key]["score"]) for key in prompts.keys}


def _sample_and_score(
    lm, tok, prompts: PromptSet, idx: list[int], scorer: Scorer, k: int, settings, seed: int, progress: bool
) -> tuple[list[list[Generated]], list[str], torch.Tensor]:
    """``k`` answers of ``lm`` to the prompts ``idx``: (generations, flat texts, scores (len(idx), k))."""
    gens = make_generator(lm, tok, settings, progress=progress).generate(
        [prompts.ids[i] for i in idx], k, settings, seed=seed
    )
    texts = [decode_response(tok, g) for group in gens for g in group]
    samples = [prompts.samples[i] for i in idx for _ in range(k)]
    return gens, texts, score_checked(scorer, samples, texts).view(len(idx), k)


@dataclass
class FilterReport:
    kept: int
    dropped: int
    threshold: float
    k: int
    unused: int = 0  # prompts never sampled: the run had enough kept ones before reaching them
    kept_scores: dict[str, list[float]] = field(default_factory=dict)  # key -> the k answers' rewards

    def summary(self) -> str:
        total = self.kept + self.dropped
        text = (
            f"prompt filter: dropped {self.dropped} of {total} prompts whose {self.k} sampled responses "
            f"had reward variance < {self.threshold:g}; kept {self.kept}"
        )
        if self.unused:
            text += f"; {self.unused} more prompts not needed by this run's steps were left unsampled"
        return text


def subset(prompts: PromptSet, rows: Sequence[int]) -> PromptSet:
    return PromptSet(
        [prompts.samples[i] for i in rows], [prompts.ids[i] for i in rows], [prompts.keys[i] for i in rows]
    )


def prompts_for_run(prompts: PromptSet, needed: int, seed: int, filtered: bool) -> PromptSet:
    """A run that draws fewer prompts than it has takes them in a seeded order, and the filter and the
    reference baseline sample only as many as it uses (the rest would cost generations for nothing):
    the first ``needed``, or, with the filter, all of them in that order for it to stop early."""
    if needed >= len(prompts.keys):
        return prompts
    order = epoch_order(len(prompts.keys), seed, 0)
    return subset(prompts, order if filtered else order[:needed])


def filter_prompts(
    models: ActorWithReference,
    prompts: PromptSet,
    scorer: Scorer,
    settings: GenerationSettings,
    k: int,
    eps: float,
    out_path: Path,
    seed: int,
    progress: bool = False,
    ranks: Ranks | None = None,
    limit: int = 0,
) -> tuple[PromptSet, FilterReport]:
    """Drop prompts whose ``k`` responses from the current policy have reward variance below ``eps``.

    With ``limit`` > 0 the prompts are decided in order, in rounds, until ``limit`` are kept (a run of
    10 steps x 8 prompts need not sample 400 prompts); the rest stay unsampled and unused. The decision
    for every decided prompt (kept or dropped, with its variance and the k scores) is written to
    ``out_path`` and reused when a rerun finds it there (resume). With several ``ranks`` each samples
    its share of a round; all get every decision; the main process alone writes the file.
    """
    ranks = ranks or Ranks()
    decided = _cache_rows(out_path)
    n = len(prompts.keys)
    target = limit if 0 < limit < n else n
    end = target
    while True:
        todo = [i for i in range(end) if prompts.keys[i] not in decided]
        if todo:
            decided.update(_decide(models, prompts, todo, scorer, settings, k, eps, seed, progress, ranks))
        n_kept = sum(decided[key]["kept"] for key in prompts.keys[:end])
        if n_kept >= target or end == n:
            break
        end = min(n, end + target - n_kept)  # as many more as were dropped
    if ranks.is_main:  # one writer; every rank holds the same decisions
        out_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_path, "".join(json.dumps(decided[key]) + "\n" for key in prompts.keys[:end]))
    keep_idx = [i for i in range(end) if decided[prompts.keys[i]]["kept"]]
    report = FilterReport(kept=len(keep_idx), dropped=end - len(keep_idx), threshold=eps, k=k, unused=n - end,
                          kept_scores={prompts.keys[i]: decided[prompts.keys[i]]["scores"] for i in keep_idx})  # fmt: skip
    return subset(prompts, keep_idx), report


def _decide(models: ActorWithReference, prompts: PromptSet, todo: list[int], scorer: Scorer, settings: GenerationSettings,
            k: int, eps: float, seed: int, progress: bool, ranks: Ranks) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Sample and score ``k`` responses to each of the prompts ``todo`` (this rank's share): every
    rank's decisions, keyed by prompt key."""
    mine, rows = ranks.share(todo), []
    if mine:
        _, _, scores = _sample_and_score(models.actor, models.tokenizer, prompts, mine, scorer, k, settings,
                                         ranks.seed(seed), progress and ranks.is_main)  # fmt: skip
        var = scores.var(dim=1, unbiased=False) if k > 1 else torch.zeros(len(mine))
        for j, i in enumerate(mine):
            keep = bool(var[j] >= eps)
            reason = None if keep else f"reward variance {float(var[j]):.3g} < {eps:g} over {k} samples"
            row = {"key": prompts.keys[i], "id": prompts.samples[i].id, "kept": keep}
            rows.append({**row, "variance": float(var[j]), "scores": scores[j].tolist(), "reason": reason})
    return {row["key"]: row for row in ranks.gather_objects(rows)}
