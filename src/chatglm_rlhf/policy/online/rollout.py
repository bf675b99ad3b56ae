"""One iteration's rollout: the sampled responses scored, the old / reference log-probs (and the
critic's values when the estimator trains one), the sequence reward, and the estimator's advantages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.generation import Generated, decode_response
from chatglm_rlhf.policy import losses as L
from chatglm_rlhf.policy.models import (
    ActorWithReference,
    SeqBatch,
    build_seq_batch,
    lm_forward,
    response_logprobs,
)
from chatglm_rlhf.policy.online import rewards as R
from chatglm_rlhf.policy.online.estimators import AdvantageInputs, Estimator
from chatglm_rlhf.policy.online.prompts import score_checked
from chatglm_rlhf.reward.protocol import Scorer
from chatglm_rlhf.utils.distributed import Ranks


@dataclass
class Rollout:
    """One iteration's responses with every per-token tensor the updates reuse, (B, R) unless noted."""

    batch: SeqBatch
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    kl: torch.Tensor  # the configured estimator's per-token KL to the reference
    advantages: torch.Tensor
    scores: torch.Tensor  # (B,) the sequence reward the estimator saw
    old_values: torch.Tensor | None = None  # critic only
    returns: torch.Tensor | None = None  # critic only
    stats: dict[str, float] = field(default_factory=dict)

    def select(self, rows: torch.Tensor) -> Rollout:
        """A minibatch: the rows, with all-padding columns trimmed."""
        batch, r = self.batch.select(rows)

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows][:, :r]

        return Rollout(batch, pick(self.old_logprobs), pick(self.ref_logprobs), pick(self.kl),
                       pick(self.advantages), self.scores[rows], pick(self.old_values), pick(self.returns))  # fmt: skip


@dataclass
class RolloutSettings:
    """What a rollout needs from the config (:func:`settings_of`)."""

    estimator: Estimator
    kl_mode: str
    kl_coef: float
    kl_estimator: str = "k1"
    truncation_penalty: float = 0.0
    reward_clip: float = 0.0
    whiten: bool = False
    gamma: float = 1.0
    lam: float = 0.95
    temperature: float = 1.0  # the sampler's: log-probs (ratio, KL) are those of what was sampled
    forward_batch_size: int = 16


@torch.no_grad()
def forward_in_chunks(
    models: ActorWithReference, batch: SeqBatch, chunk: int, temperature: float = 1.0, values: bool = False
) -> dict[str, torch.Tensor]:
    """Old log-probs, reference log-probs (and the critic's old values), ``chunk`` rows at a time, in
    eval mode: the rollout's numbers must not depend on dropout (the update then runs in train mode)."""
    mods = list(models.trainable)
    was = [mod.training for mod in mods]
    for mod in mods:
        mod.eval()
    try:
        outs: dict[str, list[torch.Tensor]] = {}
        R_ = batch.response_mask.shape[1]
        for start in range(0, batch.input_ids.shape[0], chunk):
            sub, r = batch.select(torch.arange(start, min(batch.input_ids.shape[0], start + chunk)))
            for k, v in _forward(models, sub, temperature, values).items():
                outs.setdefault(k, []).append(torch.nn.functional.pad(v, (0, R_ - r)))  # the full width
        return {k: torch.cat(v) for k, v in outs.items()}
    finally:
        for mod, training in zip(mods, was):
            mod.train(training)


def _forward(models, sub: SeqBatch, temperature: float, values: bool) -> dict[str, torch.Tensor]:
    v = None
    if values:  # a critic (or the shared backbone's value head)
        logits, v = models.policy(sub, with_values=True)
        v = models.values(sub) if v is None else v
    else:
        logits = lm_forward(models.actor, sub)[0]
    out = {
        "old_logprobs": response_logprobs(logits, sub, temperature),
        "ref_logprobs": models.reference_logprobs(sub, temperature),
    }
    if v is not None:
        out["old_values"] = v.float()
    return out


def make_rollout(
    models: ActorWithReference,
    samples: list[DialogueSample],
    gens: list[Generated],
    scorer: Scorer,
    k: int,
    rs: RolloutSettings,
    ref_scores: torch.Tensor | None = None,
    greedy_scores: torch.Tensor | None = None,
    moments: R.RunningMoments | None = None,
    ranks: Ranks | None = None,
) -> Rollout:
    """Score ``gens`` (prompt-major, ``k`` per prompt) and compute rewards and advantages (no grad).

    ``ref_scores``: the reference baseline per response; ``greedy_scores``: per prompt (remax). With
    several ``ranks`` each holds its share of the prompts; whitening, normalisation and stats use all.
    """
    ranks = ranks or Ranks()
    device = next(models.actor.parameters()).device
    t0 = time.perf_counter()
    raw = score_checked(scorer, samples, [decode_response(models.tokenizer, g) for g in gens])
    t_score = time.perf_counter() - t0
    finished = torch.tensor([g.finished for g in gens])
    scores = R.sequence_rewards(
        raw, ref_scores, finished, rs.truncation_penalty, rs.reward_clip, moments, ranks
    )
    batch = build_seq_batch([g.prompt_ids for g in gens], [g.response_ids for g in gens],
                            models.tokenizer.pad_token_id).to(device)  # fmt: skip
    t1 = time.perf_counter()
    fw = forward_in_chunks(models, batch, rs.forward_batch_size, rs.temperature, values=rs.estimator.critic)
    t_forward = time.perf_counter() - t1
    mask = batch.response_mask
    kl = L.kl_penalty(fw["old_logprobs"], fw["ref_logprobs"], rs.kl_estimator) * mask.to(
        fw["old_logprobs"].dtype
    )
    inputs = AdvantageInputs(
        scores=scores.to(device).view(-1, k), mask=mask, values=fw.get("old_values"),
        kl_rewards=-rs.kl_coef * kl if rs.kl_mode == "reward" else None,
        greedy_scores=greedy_scores, gamma=rs.gamma, lam=rs.lam,
    )  # fmt: skip
    adv, returns = rs.estimator.fn(inputs)
    if rs.whiten:
        adv = R.whiten_batch(adv, mask, ranks)
    stats = rollout_stats(raw, scores, ref_scores, finished, kl, fw, adv, mask, k, ranks)
    stats.update({"time/score": t_score, "time/forward": t_forward})
    return Rollout(batch, fw["old_logprobs"], fw["ref_logprobs"], kl, adv, scores, fw.get("old_values"),
                   returns, stats)  # fmt: skip


def rollout_stats(
    raw, scores, ref_scores, finished, kl, fw, adv, mask, k: int, ranks: Ranks
) -> dict[str, float]:
    """The rollout's logged stats over the whole batch (every rank's rows). ``kl`` is the configured
    estimator's; ``kl_k1`` and ``kl_k3`` are always logged (k3: never negative, the report's curve)."""
    g = ranks.gather
    raw_all, scores_all = g(raw), g(scores)
    old, ref = fw["old_logprobs"], fw["ref_logprobs"]
    m = mask.to(old.dtype)
    stats = {
        "reward/raw": float(raw_all.mean()),
        "reward/raw_std": float(raw_all.std()) if len(raw_all) > 1 else 0.0,
        "reward/train": float(scores_all.mean()),
        "reward/train_std": float(scores_all.std()) if len(scores_all) > 1 else 0.0,
        "kl": float(g(kl.sum(-1)).mean()),
        "kl_k1": float(g((old - ref).mul(mask).sum(-1)).mean()),
        "kl_k3": float(g(L.kl_penalty(old, ref, "k3").mul(mask).sum(-1)).mean()),
        "advantage/mean": float(ranks.sum((adv * m).sum()) / ranks.sum(m.sum()).clamp(min=1)),
        "advantage/abs_mean": float(ranks.sum((adv.abs() * m).sum()) / ranks.sum(m.sum()).clamp(min=1)),
        "response_len": float(g(mask.sum(-1).float()).mean()),
        "truncated_frac": float(g((~finished).float()).mean()),
    }
    if k > 1:  # prompts whose k scores are all equal: no signal for a group baseline (the filter's target)
        stats["groups/flat_frac"] = float(g((scores.view(-1, k).std(-1) < 1e-8).float()).mean())
    if "old_values" in fw:
        v = fw["old_values"]
        stats["value/mean"] = float(ranks.sum((v * m).sum()) / ranks.sum(m.sum()).clamp(min=1))
    if ref_scores is not None:
        stats["reward/ref"] = float(g(ref_scores).mean())
        stats["reward/minus_baseline"] = float(g(raw - ref_scores).mean())
    return stats


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
