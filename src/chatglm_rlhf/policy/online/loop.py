"""The online RL loop, written once: rollout -> score -> advantages -> clipped policy loss (+ value loss
when the estimator trains a critic) -> KL in the reward or as a loss -> ptx -> optimiser step.

PPO is this loop with the ``gae`` estimator; GRPO, Dr. GRPO, RLOO, REINFORCE++, the reference
baseline and ReMax are the same loop with another estimator (:mod:`.estimators`). Every estimator gets
every feature: FSDP2 sharding, checkpoints and resume, snapshots (the over-optimisation curve), the vLLM
sampler with its log-prob-gap health metric, the reference baseline, the prompt filter and ptx.

Reproducibility: the prompts of step s, the sampling seed and the minibatch order are functions of
(seed, s) alone, so a run resumed from a checkpoint takes exactly the step an uninterrupted run takes.
Several processes: each rank samples all k responses of its share of the prompts (a group never spans
ranks, so group baselines need no communication); whitening and the loss's denominator are taken over
every rank, so 2 processes make the update of 1.
"""

from __future__ import annotations

import math
import shutil
import time
from typing import Any

import torch
from tqdm.auto import tqdm

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.generation import Generator, make_generator
from chatglm_rlhf.policy.models import ActorWithReference
from chatglm_rlhf.policy.online import rewards as R
from chatglm_rlhf.policy.online.config import OnlineConfig, resolved, sampling_temperature, validate
from chatglm_rlhf.policy.online.estimators import get_estimator
from chatglm_rlhf.policy.online.prompts import score_checked
from chatglm_rlhf.policy.online.rollout import Rollout, RolloutSettings, engine_logprob_gap, make_rollout
from chatglm_rlhf.policy.online.setup import LoopSetup
from chatglm_rlhf.policy.online.update import UpdateMixin
from chatglm_rlhf.reward.protocol import Scorer
from chatglm_rlhf.utils import fsdp as F
from chatglm_rlhf.utils.training import epoch_order, open_run


class OnlineTrainer(LoopSetup, UpdateMixin):
    """Online RL over ``prompts`` with ``cfg.estimator``; pass ``sft_examples`` (sample, response) for ptx.

    ``models``: :class:`~chatglm_rlhf.policy.models.ActorWithReference`, or
    :class:`~chatglm_rlhf.policy.online.critic.ActorCritic` for an estimator that trains a critic.
    """

    def __init__(
        self,
        cfg: OnlineConfig,
        models: ActorWithReference,
        scorer: Scorer,
        prompts: list[DialogueSample],
        sft_examples: list[tuple[DialogueSample, str]] | None = None,
        generator: Generator | None = None,
    ):
        validate(cfg)
        self.estimator = get_estimator(cfg.estimator, f"{cfg.NAME}: estimator")
        if self.estimator.critic and not hasattr(models, "values"):
            raise ValueError(
                f"{cfg.NAME}: estimator={cfg.estimator} trains a critic: give ActorCritic models"
            )
        self.NAME = cfg.NAME
        self._setup(cfg, models, scorer)
        self.generator = generator or make_generator(models.actor, models.tokenizer, cfg.generation)
        self.raw_prompts = prompts
        self.ptx = self._encode_ptx(sft_examples or [])
        if cfg.adaptive_kl:
            self.kl_ctl: R.FixedKLController = R.AdaptiveKLController(
                cfg.kl_coef, cfg.kl_target, cfg.kl_horizon
            )
        else:
            self.kl_ctl = R.FixedKLController(cfg.kl_coef)
        self.moments = R.RunningMoments() if cfg.reward_normalize else None
        self.filter_report = None
        self.kl_mode, self.loss_agg = resolved(cfg)
        self.temperature = sampling_temperature(cfg.generation)
        self.use_baseline = cfg.reward_baseline or self.estimator.reference_baseline

    # --- the loop ------------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        cfg, acc = self.cfg, self.acc
        t_start = time.time()
        if not cfg.resume and acc.is_main_process:  # a fresh run must not reuse old caches or log rows
            if (self.out / "checkpoints").exists():
                print(
                    f"{self.NAME}: {self.out} has checkpoints; starting afresh (resume=true would continue)"
                )
            for name in ("prompt_filter.jsonl", "reference_baseline.jsonl", "metrics.jsonl"):
                (self.out / name).unlink(missing_ok=True)
            shutil.rmtree(self.out / "snapshots", ignore_errors=True)  # an earlier run's policies
        acc.wait_for_everyone()  # no rank reads a cache before rank 0 has removed a stale one
        self.prompts = self.prepare_prompts()
        ckpt, log, state = open_run(cfg.output_dir, acc, cfg.resume, report_to=cfg.report_to, config=cfg,
                                    sharded=self._prepare_optimizer())  # fmt: skip
        step = state["step"]
        if step:  # resumed: the KL controller and reward moments continue too
            self.kl_ctl.load_state_dict(state["kl_ctl"])
            if self.moments is not None and state.get("moments"):
                self.moments.load_state_dict(state["moments"])
        bar = tqdm(
            total=cfg.steps, initial=step, desc=self.NAME, disable=not (cfg.progress and acc.is_main_process)
        )
        while step < cfg.steps:
            metrics = self.step(step)
            step += 1
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['reward/raw']:.3f}", kl=f"{metrics['kl']:.3f}")
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.log(step, metrics)
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
                ckpt.save(step, extra=self._state())
            if cfg.snapshot_every and step % cfg.snapshot_every == 0 and step < cfg.steps:
                self.save_policy(self.out / "snapshots" / f"step_{step}")
        bar.close()
        log.close()
        result = self._summary()
        result.update(steps=step, seconds=time.time() - t_start, estimator=cfg.estimator)
        self.save(result)
        return result

    def _state(self) -> dict[str, Any]:
        return {
            "kl_ctl": self.kl_ctl.state_dict(),
            "moments": self.moments.state_dict() if self.moments else None,
        }

    def _prompt_rows(self, step: int) -> list[int]:
        """This rank's prompts of step ``step``: its share of the ``rollout_batch_size`` prompts of the
        step, a function of (seed, step), so resume replays the same ones."""
        n, bs = len(self.prompts.keys), self.cfg.rollout_batch_size
        rows = []
        for j in range(step * bs, (step + 1) * bs):
            epoch, k = divmod(j, n)
            rows.append(epoch_order(n, self.cfg.seed, epoch)[k])
        return self.ranks.share(rows)

    def step(self, step: int) -> dict[str, float]:
        """One iteration: k responses per prompt, score, advantages, ``update_epochs`` of updates."""
        cfg, m = self.cfg, self.models
        rows = self._prompt_rows(step)
        t0 = time.perf_counter()
        seed = self.ranks.seed(cfg.seed * 100_003 + step)
        gens = self._sample(rows, seed)
        t_gen = time.perf_counter() - t0
        rollout = self._rollout(rows, gens, seed)
        t1 = time.perf_counter()
        train_stats, train_tokens = self._epochs(rollout, step)
        t_train = time.perf_counter() - t1
        kl_coef = self.kl_ctl.value
        self.kl_ctl.update(rollout.stats["kl"], cfg.rollout_batch_size)  # the KL over all ranks' rows
        t2 = time.perf_counter()
        if hasattr(self.generator, "sync_weights"):  # an external engine (e.g. vLLM) needs the new weights
            self.generator.sync_weights(m.actor)
        t_sync = time.perf_counter() - t2
        # Logged for the whole batch: means over ranks, tokens summed (this rank's wall times).
        train_stats = self.ranks.mean_dict(train_stats)
        gen_tokens = self.ranks.total(sum(len(g.response_ids) for g in gens))
        train_tokens = self.ranks.total(train_tokens)
        return {
            **rollout.stats, **train_stats, "kl_coef": kl_coef,
            "time/generate": t_gen, "time/train": t_train, "time/sync": t_sync,
            "tokens_per_s/generate": gen_tokens / max(t_gen, 1e-9),
            "tokens_per_s/train": train_tokens / max(t_train, 1e-9),
        }  # fmt: skip

    def _sample(self, rows: list[int], seed: int, k: int | None = None, greedy: bool = False) -> list:
        """``k`` responses to each prompt of ``rows``, prompt-major (row i * k + j: sample j of prompt i).

        HF generate runs over the gathered weights (F.full_params: why not through the shards; a no-op
        unsharded); an engine with its own weights (vLLM) gets them from sync_weights instead."""
        from dataclasses import replace

        cfg, k = self.cfg, k or self.cfg.k
        settings = replace(cfg.generation, greedy=True) if greedy else cfg.generation
        ids = [self.prompts.ids[i] for i in rows]
        gather = self.models.sampler if self.fsdp and not hasattr(self.generator, "sync_weights") else None
        with F.full_params(gather):
            if settings.greedy:  # k greedy answers are one answer k times: decode it once
                groups = [group * k for group in self.generator.generate(ids, 1, settings, seed=seed)]
            else:
                groups = self.generator.generate(ids, k, settings, seed=seed)
        return [g for group in groups for g in group]

    def _rollout(self, rows: list[int], gens: list, seed: int) -> Rollout:
        """Score and compute advantages; the baselines the estimator asks for come first."""
        cfg, k = self.cfg, self.cfg.k
        samples = [self.prompts.samples[i] for i in rows for _ in range(k)]
        ref = greedy = None
        if self.use_baseline:
            ref = torch.tensor([self.baseline[self.prompts.keys[i]] for i in rows], dtype=torch.float32)
            ref = ref.repeat_interleave(k)
        if self.estimator.greedy_baseline:
            greedy = self._greedy_scores(rows, seed)
        settings = RolloutSettings(
            self.estimator, self.kl_mode, self.kl_ctl.value, cfg.kl_estimator, cfg.truncation_penalty,
            cfg.reward_clip, cfg.whiten_advantages or self.estimator.whiten, cfg.gamma, cfg.lam,
            self.temperature, cfg.forward_batch_size,
        )  # fmt: skip
        with self.acc.autocast():  # old log-probs in the same precision as the updates' new ones
            rollout = make_rollout(self.models, samples, gens, self.scorer, k, settings, ref, greedy,
                                   self.moments, self.ranks)  # fmt: skip
        gap = engine_logprob_gap(gens, rollout.old_logprobs, rollout.batch.response_mask)
        if gap is not None:  # this rank's rows: logged as the mean over ranks
            rollout.stats["health/engine_logprob_gap"] = self.ranks.mean_dict({"g": gap})["g"]
        return rollout

    def _greedy_scores(self, rows: list[int], seed: int) -> torch.Tensor:
        """The reward of the current policy's greedy answer to each prompt (ReMax's baseline), with the
        truncation penalty its samples get."""
        from chatglm_rlhf.models.generation import decode_response

        gens = self._sample(rows, seed, k=1, greedy=True)
        texts = [decode_response(self.models.tokenizer, g) for g in gens]
        raw = score_checked(self.scorer, [self.prompts.samples[i] for i in rows], texts)
        finished = torch.tensor([g.finished for g in gens])
        return R.truncation_penalty(raw, finished, self.cfg.truncation_penalty)

    def _epochs(self, rollout: Rollout, step: int) -> tuple[dict[str, float], int]:
        """``update_epochs`` passes over this rank's rows; a minibatch is ``mini_batch_size`` rows over
        all ranks (each rank's equal share), so every rank makes the same number of updates."""
        cfg, n_epochs = self.cfg, self.cfg.update_epochs
        B = rollout.batch.input_ids.shape[0]
        mini = cfg.mini_batch_size // self.ranks.count
        sums: dict[str, float] = {}
        n_updates, tokens = 0, 0
        for epoch in range(n_epochs):
            g = torch.Generator().manual_seed(self.ranks.seed(cfg.seed * 1_000_003 + step * 101 + epoch))
            perm = torch.randperm(B, generator=g)
            for start in range(0, B, mini):
                update = (step * n_epochs + epoch) * math.ceil(B / mini) + start // mini
                stats, n_tok = self._update(rollout, perm[start : start + mini], update, step)
                tokens += n_tok
                n_updates += 1
                for key, v in stats.items():
                    sums[key] = sums.get(key, 0.0) + v
        return {key: v / max(n_updates, 1) for key, v in sums.items()}, tokens
