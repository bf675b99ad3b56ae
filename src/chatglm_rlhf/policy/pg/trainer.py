"""Critic-free policy optimisation: GRPO, Dr. GRPO, RLOO, REINFORCE++ and the paper's reference baseline.

One iteration: sample ``k`` responses to each of ``rollout_batch_size`` prompts, score them, turn the
scores into advantages with the chosen estimator (:mod:`chatglm_rlhf.policy.pg.losses`), add the KL to
the reference either to the reward (per token, as PPO) or as a k3 loss term, then ``epochs`` passes of
clipped-ratio updates over minibatches of ``mini_batch_size`` responses, each mixed with the ptx SFT
loss. No value model: no critic forward, backward or optimizer state.

Everything around the step is PPO's (:class:`~chatglm_rlhf.policy.ppo.trainer.PPOTrainer`): the loop,
checkpoints and resume, the prompt filter and the reference-baseline cache, the ptx batches, the
per-rank prompt shares and seeds, gradient clipping and saving; so the two differ only in what the
comparison is about. Several processes: each rank samples all k responses of its share of the
prompts (a group never spans ranks, so group baselines need no communication); REINFORCE++'s batch
normalisation and the loss's denominator are taken over every rank, so 2 processes make the update
of 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.generation import Generated, Generator, decode_response, make_generator
from chatglm_rlhf.policy.pg import losses as PG
from chatglm_rlhf.policy.pg.config import PGConfig, validate
from chatglm_rlhf.policy.ppo import losses as L
from chatglm_rlhf.policy.ppo.config import sampling_temperature
from chatglm_rlhf.policy.ppo.models import (
    ActorWithReference,
    SeqBatch,
    build_seq_batch,
    lm_forward,
    response_logprobs,
)
from chatglm_rlhf.policy.ppo.rollout import score_checked, whiten_across
from chatglm_rlhf.policy.ppo.trainer import PPOTrainer
from chatglm_rlhf.reward.protocol import Scorer
from chatglm_rlhf.utils.training import check_finite


@dataclass
class PGRollout:
    """One iteration's responses with the per-token tensors the updates reuse, (B, R) each."""

    batch: SeqBatch
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    advantages: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)

    def select(self, rows: torch.Tensor) -> PGRollout:
        batch, r = self.batch.select(rows)
        old, ref, adv = (t[rows][:, :r] for t in (self.old_logprobs, self.ref_logprobs, self.advantages))
        return PGRollout(batch, old, ref, adv)


@torch.no_grad()
def old_and_reference_logprobs(
    models: ActorWithReference, batch: SeqBatch, chunk: int, temperature: float
) -> dict[str, torch.Tensor]:
    """The actor's and the reference's log-probs of the sampled tokens, ``chunk`` rows at a time, in
    eval mode (the rollout's numbers must not depend on dropout)."""
    was = models.actor.training
    models.actor.eval()
    outs: dict[str, list[torch.Tensor]] = {"old_logprobs": [], "ref_logprobs": []}
    R = batch.response_mask.shape[1]
    try:
        for start in range(0, batch.input_ids.shape[0], chunk):
            sub, r = batch.select(torch.arange(start, min(batch.input_ids.shape[0], start + chunk)))
            parts = {
                "old_logprobs": response_logprobs(lm_forward(models.actor, sub)[0], sub, temperature),
                "ref_logprobs": models.reference_logprobs(sub, temperature),
            }
            for k, v in parts.items():
                outs[k].append(torch.nn.functional.pad(v, (0, R - r)))
    finally:
        models.actor.train(was)
    return {k: torch.cat(v) for k, v in outs.items()}


class PGTrainer(PPOTrainer):
    """Critic-free training over ``prompts``; pass ``sft_examples`` (sample, response) to enable ptx."""

    NAME: ClassVar[str] = "pg"

    def __init__(
        self,
        cfg: PGConfig,
        models: ActorWithReference,
        scorer: Scorer,
        prompts: list[DialogueSample],
        sft_examples: list[tuple[DialogueSample, str]] | None = None,
        generator: Generator | None = None,
    ):
        validate(cfg)
        self._setup(cfg, models, scorer)
        self.generator = generator or make_generator(models.actor, models.tokenizer, cfg.generation)
        self.raw_prompts = prompts
        self.ptx = self._encode_ptx(sft_examples or [])
        # The shared loop checkpoints these; a fixed beta and no running reward moments here.
        self.kl_ctl = L.FixedKLController(cfg.kl_coef)
        self.moments = None
        self.filter_report = None
        self.kl_mode, self.loss_agg = cfg.resolved_kl_mode(), cfg.resolved_loss_agg()
        self.temperature = sampling_temperature(cfg.generation)

    def _optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.models.actor.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    # --- one iteration -------------------------------------------------------------------------------

    def step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        rows = self._prompt_rows(step)
        t0 = time.perf_counter()
        seed = self.ranks.seed(cfg.seed * 100_003 + step)
        ids = [self.prompts.ids[i] for i in rows]
        if cfg.generation.greedy:  # k greedy answers are one answer k times: decode it once
            groups = [group * cfg.k for group in self.generator.generate(ids, 1, cfg.generation, seed=seed)]
        else:
            groups = self.generator.generate(ids, cfg.k, cfg.generation, seed=seed)
        gens = [g for group in groups for g in group]  # prompt-major: row i * k + j is sample j of prompt i
        t_gen = time.perf_counter() - t0
        ref = None
        if cfg.estimator == "ref_baseline":
            ref = torch.tensor([self.baseline[self.prompts.keys[i]] for i in rows], dtype=torch.float32)
        with self.acc.autocast():  # old log-probs in the same precision as the updates' new ones
            rollout = self.make_rollout(rows, gens, ref)
        t1 = time.perf_counter()
        train_stats, train_tokens = self._epochs(rollout, step)
        t_train = time.perf_counter() - t1
        if hasattr(self.generator, "sync_weights"):  # an external engine (e.g. vLLM) needs the new weights
            self.generator.sync_weights(self.models.actor)
        train_stats = self.ranks.mean_dict(train_stats)
        gen_tokens = self.ranks.total(sum(len(g.response_ids) for g in gens))
        train_tokens = self.ranks.total(train_tokens)
        return {
            **rollout.stats,
            **train_stats,
            "kl_coef": cfg.kl_coef,
            "time/generate": t_gen,
            "time/train": t_train,
            "tokens_per_s/generate": gen_tokens / max(t_gen, 1e-9),
            "tokens_per_s/train": train_tokens / max(t_train, 1e-9),
        }

    def make_rollout(self, rows: list[int], gens: list[Generated], ref: torch.Tensor | None) -> PGRollout:
        """Score the responses and compute per-token advantages (no grad)."""
        cfg, m, k = self.cfg, self.models, self.cfg.k
        device = next(m.actor.parameters()).device
        t0 = time.perf_counter()
        samples = [self.prompts.samples[i] for i in rows for _ in range(k)]
        raw = score_checked(self.scorer, samples, [decode_response(m.tokenizer, g) for g in gens])
        t_score = time.perf_counter() - t0
        finished = torch.tensor([g.finished for g in gens])
        scores = (
            L.truncation_penalty(raw, finished, cfg.truncation_penalty) if cfg.truncation_penalty else raw
        )
        seq_adv = PG.sequence_advantages(cfg.estimator, scores.view(len(rows), k), ref).reshape(-1)
        batch = build_seq_batch([g.prompt_ids for g in gens], [g.response_ids for g in gens],
                                m.tokenizer.pad_token_id).to(device)  # fmt: skip
        t1 = time.perf_counter()
        fw = old_and_reference_logprobs(m, batch, cfg.forward_batch_size, self.temperature)
        t_forward = time.perf_counter() - t1
        mask = batch.response_mask
        kl_tok = L.kl_penalty(fw["old_logprobs"], fw["ref_logprobs"], cfg.kl_estimator) * mask
        if self.kl_mode == "reward":
            adv = PG.token_advantages(seq_adv.to(device), mask, kl_tok, cfg.kl_coef)
        else:
            adv = PG.token_advantages(seq_adv.to(device), mask)
        if cfg.estimator == "reinforce_pp":  # normalised over the whole batch: every rank's tokens
            adv = (
                PG.batch_normalize(adv, mask)
                if self.ranks.count == 1
                else whiten_across(adv, mask, self.ranks)
            )
        stats = self._rollout_stats(raw, scores, ref, seq_adv, finished, fw, mask)
        stats.update({"time/score": t_score, "time/forward": t_forward})
        return PGRollout(batch, fw["old_logprobs"], fw["ref_logprobs"], adv, stats)

    def _rollout_stats(self, raw, scores, ref, seq_adv, finished, fw, mask) -> dict[str, float]:
        """Logged over the whole batch (every rank's rows)."""
        g, k = self.ranks.gather, self.cfg.k
        train = scores - ref.repeat_interleave(k) if ref is not None else scores
        raw_all, train_all, adv_all = g(raw), g(train), g(seq_adv)
        old, ref_lp = fw["old_logprobs"], fw["ref_logprobs"]
        flat = g((scores.view(-1, k).std(-1) < 1e-8).float()) if k > 1 else torch.ones(1)
        stats = {
            "reward/raw": float(raw_all.mean()),
            "reward/raw_std": float(raw_all.std()) if len(raw_all) > 1 else 0.0,
            "reward/train": float(train_all.mean()),
            "reward/train_std": float(train_all.std()) if len(train_all) > 1 else 0.0,
            "advantage/mean": float(adv_all.mean()),
            "advantage/abs_mean": float(adv_all.abs().mean()),
            # Prompts whose k scores are all equal: no signal for a group baseline (the filter's target).
            "groups/flat_frac": float(flat.mean()),
            "kl": float(g((old - ref_lp).mul(mask).sum(-1)).mean()),
            "kl_k3": float(g(L.kl_penalty(old, ref_lp, "k3").mul(mask).sum(-1)).mean()),
            "response_len": float(g(mask.sum(-1).float()).mean()),
            "truncated_frac": float(g((~finished).float()).mean()),
        }
        if ref is not None:
            stats["reward/ref"] = float(g(ref).mean())
            stats["reward/minus_baseline"] = float(g(raw - ref.repeat_interleave(k)).mean())
        return stats

    # --- updates -------------------------------------------------------------------------------------

    def _num_epochs(self) -> int:
        return self.cfg.epochs

    def _update(
        self, rollout: PGRollout, rows: torch.Tensor, update: int, step: int
    ) -> tuple[dict[str, float], int]:
        """One optimizer step: clipped policy loss (+ k3 KL term) (+ ptx), one backward per micro-batch.

        The loss is ``sum of numerators / denominator of the whole minibatch`` (:func:`PG.aggregate`),
        the denominator summed over micro-batches and ranks first: DDP averages the ranks' gradients, so
        each rank's part is scaled by the number of ranks.
        """
        from chatglm_rlhf.policy.losses import sft_loss

        cfg, acc, m = self.cfg, self.acc, self.models
        mods = m.prepared or m.trainable
        for mod in mods:
            mod.train()
        micro = cfg.micro_batch_size or len(rows)
        parts = [rollout.select(rows[i : i + micro]) for i in range(0, len(rows), micro)]
        max_len = cfg.generation.max_new_tokens
        local_den = sum(float(PG.aggregate(p.advantages, p.batch.response_mask, self.loss_agg, max_len)[1])
                        for p in parts)  # fmt: skip
        den = (
            float(self.ranks.sum(torch.tensor(local_den, dtype=torch.float64)))
            if self.ranks.count > 1
            else local_den
        )
        den = max(den, 1e-9)
        ptx, ptx_counts = self._ptx_batch(update)
        chunks = [rows[i : i + micro] for i in range(0, len(rows), micro)]
        weights = self._loss_weights(rollout, chunks, ptx, ptx_counts)  # PPO's; its last is the ptx weight
        ptx_weight = weights[-1] if weights is not None else 1.0
        sums = {"loss/policy": 0.0, "loss/kl": 0.0, "policy/clip_frac": 0.0, "policy/approx_kl": 0.0}
        stats: dict[str, float] = {}
        tokens = 0
        for i, mb in enumerate(parts):
            b = mb.batch.to(acc.device)
            mask = b.response_mask
            with self._no_sync(mods, last=i == len(parts) - 1):
                with acc.autocast():
                    logits = lm_forward(mods[0], b)[0]  # through the DDP / FSDP wrapper
                    logprobs = response_logprobs(logits, b, self.temperature)
                    per_token, ps = PG.clipped_token_loss(
                        logprobs, mb.old_logprobs, mb.advantages, mask, cfg.clip_range
                    )
                    pg_num = PG.aggregate(per_token, mask, self.loss_agg, max_len)[0]
                    total = per_token
                    kl_num = torch.zeros(())
                    if self.kl_mode == "loss" and cfg.kl_coef:
                        kl_tok = PG.k3_kl(logprobs, mb.ref_logprobs, mask)
                        kl_num = PG.aggregate(kl_tok, mask, self.loss_agg, max_len)[0]
                        total = per_token + cfg.kl_coef * kl_tok
                    num = PG.aggregate(total, mask, self.loss_agg, max_len)[0]
                    loss = num * self.ranks.count / den
                    ptx_loss = None
                    if ptx is not None and i == 0:  # the ptx term joins the first micro-batch's loss
                        ptx_logits = m.train_lm(
                            input_ids=ptx["input_ids"].to(acc.device),
                            attention_mask=ptx["attention_mask"].to(acc.device),
                        ).logits
                        ptx_loss = sft_loss(ptx_logits, ptx["labels"].to(acc.device))[0]
                        loss = loss + cfg.ptx_coef * ptx_loss * ptx_weight
                        tokens += int(ptx["attention_mask"].sum()) if ptx_counts else 0
                check_finite(loss, step + 1)
                acc.backward(loss)
            tokens += int(b.attention_mask.sum())
            share = len(mb.batch.input_ids) / len(rows)
            sums["loss/policy"] += float(pg_num.detach()) / max(local_den, 1e-9)
            sums["loss/kl"] += float(kl_num.detach()) / max(local_den, 1e-9)
            sums["policy/clip_frac"] += float(ps.clip_frac) * share
            sums["policy/approx_kl"] += float(ps.approx_kl) * share
            if ptx_loss is not None:
                stats["loss/ptx"] = ptx_loss.item()
        self._clip_and_step(mods)
        return {**sums, **stats}, tokens
