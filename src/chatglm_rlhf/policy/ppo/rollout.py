"""Rollouts: sample responses, score them, and turn scores into per-token advantages.

Also the two things the paper does once before training: the **reference baseline** (the SFT model's
own answer to every prompt, scored once and cached, so the reward is ``r(x, y) - r(x, y_ref)``) and
the **prompt filter** (drop prompts whose k sampled responses all get about the same reward: they
carry no learning signal).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.generation import Generated, GenerationSettings, decode_response, make_generator
from chatglm_rlhf.policy.ppo import losses as L
from chatglm_rlhf.policy.ppo.models import PPOModels, SeqBatch, build_seq_batch, response_logprobs
from chatglm_rlhf.reward.protocol import Scorer
from chatglm_rlhf.utils.distributed import Ranks
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


# --- rollout data ------------------------------------------------------------------------------------


@dataclass
class Rollout:
    """One rollout batch: sequences plus every per-token tensor PPO's epochs reuse. (B, R) unless noted."""

    batch: SeqBatch
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    old_values: torch.Tensor
    rewards: torch.Tensor
    kl: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    scores: torch.Tensor  # (B,) the reward fed to PPO (after baseline / penalty / clip / norm)
    stats: dict[str, float] = field(default_factory=dict)

    def select(self, rows: torch.Tensor) -> Rollout:
        """A minibatch: the rows, with all-padding columns trimmed."""
        batch, r = self.batch.select(rows)
        pick = {
            name: getattr(self, name)[rows][:, :r]
            for name in (
                "old_logprobs",
                "ref_logprobs",
                "old_values",
                "rewards",
                "kl",
                "advantages",
                "returns",
            )
        }
        return Rollout(batch=batch, scores=self.scores[rows], **pick)


@dataclass
class RewardSettings:
    """How sequence scores become the reward PPO optimises (a subset of PPOConfig)."""

    baseline: bool = True
    truncation_penalty: float = 0.0
    reward_clip: float = 0.0
    normalize: bool = False
    kl_estimator: str = "k1"
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    temperature: float = 1.0  # the sampler's: log-probs (ratio, KL) are those of what was sampled


def final_scores(
    raw: torch.Tensor,
    ref: torch.Tensor | None,
    finished: torch.Tensor,
    rs: RewardSettings,
    moments: L.RunningMoments | None,
    ranks: Ranks | None = None,
) -> torch.Tensor:
    """Raw RM scores -> the sequence reward: penalty for truncation, baseline, then clip / normalise.

    The running moments are updated with every rank's scores, so all ranks normalise alike.
    """
    scores = L.truncation_penalty(raw, finished, rs.truncation_penalty) if rs.truncation_penalty else raw
    if ref is not None:
        scores = L.reference_baseline_reward(scores, ref)
    if rs.normalize and moments is not None:
        moments.update((ranks or Ranks()).gather(scores).cpu())
        scores = moments.normalize(scores)
    return L.clip_rewards(scores, rs.reward_clip)


@torch.no_grad()
def forward_in_chunks(
    models: PPOModels, batch: SeqBatch, chunk: int, temperature: float = 1.0
) -> dict[str, torch.Tensor]:
    """Old log-probs, reference log-probs and old values, ``chunk`` rows at a time (no grad), in eval
    mode: the rollout's numbers must not depend on dropout (the update then runs in train mode)."""
    mods = list(models.trainable)
    was = [mod.training for mod in mods]
    for mod in mods:
        mod.eval()
    try:
        return _forward_chunks(models, batch, chunk, temperature)
    finally:
        for mod, training in zip(mods, was):
            mod.train(training)


def _forward_chunks(
    models: PPOModels, batch: SeqBatch, chunk: int, temperature: float
) -> dict[str, torch.Tensor]:
    outs: dict[str, list[torch.Tensor]] = {"old_logprobs": [], "ref_logprobs": [], "old_values": []}
    B, R = batch.response_mask.shape
    for start in range(0, B, chunk):
        rows = torch.arange(start, min(B, start + chunk))
        sub, r = batch.select(rows)
        logits, values = models.policy(sub, with_values=True)
        if values is None:
            values = models.values(sub)
        parts = {
            "old_logprobs": response_logprobs(logits, sub, temperature),
            "ref_logprobs": models.reference_logprobs(sub, temperature),
            "old_values": values.float(),
        }
        for k, v in parts.items():
            outs[k].append(torch.nn.functional.pad(v, (0, R - r)))  # back to the full width
    return {k: torch.cat(v) for k, v in outs.items()}


def make_rollout(
    models: PPOModels,
    samples: list[DialogueSample],
    gens: list[Generated],
    scorer: Scorer,
    ref_scores: torch.Tensor | None,
    rs: RewardSettings,
    kl_coef: float,
    forward_batch_size: int,
    moments: L.RunningMoments | None = None,
    ranks: Ranks | None = None,
) -> Rollout:
    """Score the sampled responses and compute rewards, advantages and returns (all without grad).

    With several ``ranks`` each holds its share of the rollout batch; advantage whitening, reward
    normalisation and the stats use all of them.
    """
    ranks = ranks or Ranks()
    device = next(models.actor.parameters()).device
    t0 = time.perf_counter()
    texts = [decode_response(models.tokenizer, g) for g in gens]
    raw = score_checked(scorer, samples, texts)
    t_score = time.perf_counter() - t0
    finished = torch.tensor([g.finished for g in gens])
    scores = final_scores(raw, ref_scores, finished, rs, moments, ranks)
    pad_id = models.tokenizer.pad_token_id
    batch = build_seq_batch([g.prompt_ids for g in gens], [g.response_ids for g in gens], pad_id).to(device)
    t1 = time.perf_counter()
    fw = forward_in_chunks(models, batch, forward_batch_size, rs.temperature)
    t_forward = time.perf_counter() - t1
    mask = batch.response_mask
    rewards, kl = L.shape_rewards(
        scores.to(device), fw["old_logprobs"], fw["ref_logprobs"], mask, kl_coef, rs.kl_estimator
    )
    adv, returns = L.gae(rewards, fw["old_values"], mask, rs.gamma, rs.lam)
    if rs.whiten_advantages:
        adv = L.whiten(adv, mask) if ranks.count == 1 else whiten_across(adv, mask, ranks)
    times = {"time/score": t_score, "time/forward": t_forward}
    stats = rollout_stats(raw, scores, ref_scores, finished, kl, fw, mask, times, ranks)
    return Rollout(
        batch=batch, scores=scores, rewards=rewards, kl=kl, advantages=adv, returns=returns, stats=stats, **fw
    )


def engine_logprob_gap(gens: list[Generated], old_logprobs: torch.Tensor, mask: torch.Tensor) -> float | None:
    """Mean |engine log-prob - recomputed log-prob| over the response tokens, or None when the sampler
    reports none (hf). A health figure only: the importance ratio always uses the recomputed ones; a
    gap that grows says the engine samples from other weights (a missed sync) or other numerics."""
    if not gens or any(g.logprobs is None for g in gens):
        return None
    eng = torch.zeros_like(old_logprobs, dtype=torch.float32)
    for r, g in enumerate(gens):
        n = min(len(g.logprobs), eng.shape[1])
        eng[r, :n] = torch.tensor(g.logprobs[:n], dtype=torch.float32)
    m = mask.bool() & torch.isfinite(eng).to(mask.device)
    diff = (eng.to(old_logprobs.device) - old_logprobs.float()).abs()
    return float(diff[m].mean()) if m.any() else None


def whiten_across(x: torch.Tensor, mask: torch.Tensor, ranks: Ranks, eps: float = 1e-8) -> torch.Tensor:
    """``ppo_losses.whiten`` with the mean and (Bessel-corrected) variance of every rank's entries."""
    m = mask.to(x.dtype)
    n = ranks.sum(m.sum())
    mean = ranks.sum((x * m).sum()) / n.clamp(min=1)
    var = ranks.sum(((x - mean) ** 2 * m).sum()) / n.clamp(min=1)
    if n > 1:
        var = var * n / (n - 1)
    return (x - mean) * torch.rsqrt(var + eps) * m


def rollout_stats(raw, scores, ref_scores, finished, kl, fw, mask, times, ranks: Ranks) -> dict[str, float]:
    """The rollout's logged stats over the whole batch (every rank's rows); ``times`` are this rank's."""
    g = ranks.gather
    raw_all, scores_all = g(raw), g(scores)
    old, ref, values = fw["old_logprobs"], fw["ref_logprobs"], fw["old_values"]
    m = mask.to(values.dtype)
    stats = {
        "reward/raw": float(raw_all.mean()),
        "reward/raw_std": float(raw_all.std()) if len(raw_all) > 1 else 0.0,
        "reward/train": float(scores_all.mean()),
        "reward/train_std": float(scores_all.std()) if len(scores_all) > 1 else 0.0,
        "kl": float(g(kl.sum(-1)).mean()),
        "kl_k1": float(g((old - ref).mul(mask).sum(-1)).mean()),
        # k3 is unbiased like k1 and never negative: the curve the report plots.
        "kl_k3": float(g(L.kl_penalty(old, ref, "k3").mul(mask).sum(-1)).mean()),
        "response_len": float(g(mask.sum(-1).float()).mean()),
        "truncated_frac": float(g((~finished).float()).mean()),
        "value/mean": float(ranks.sum((values * m).sum()) / ranks.sum(m.sum()).clamp(min=1)),
        **times,
    }
    if ref_scores is not None:
        stats["reward/ref"] = float(g(ref_scores).mean())
        stats["reward/minus_baseline"] = float(g(raw - ref_scores).mean())
    return stats


# --- before training: reference baseline and prompt filter --------------------------------------------


@dataclass
class PromptSet:
    samples: list[DialogueSample]
    ids: list[list[int]]
    keys: list[str]


def _cache_rows(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    return {r["key"]: r for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip())}


def reference_baseline(
    models: PPOModels,
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
    models: PPOModels,
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
        out_path.write_text("".join(json.dumps(decided[key]) + "\n" for key in prompts.keys[:end]))
    keep_idx = [i for i in range(end) if decided[prompts.keys[i]]["kept"]]
    report = FilterReport(kept=len(keep_idx), dropped=end - len(keep_idx), threshold=eps, k=k, unused=n - end)
    return subset(prompts, keep_idx), report


def _decide(models: PPOModels, prompts: PromptSet, todo: list[int], scorer: Scorer, settings: GenerationSettings,
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
