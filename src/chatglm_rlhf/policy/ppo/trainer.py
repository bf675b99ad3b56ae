"""PPO with the paper's reference baseline, a KL penalty to the SFT model, and the ptx SFT loss.

One iteration: sample a response to each of ``rollout_batch_size`` prompts (KV-cached ``generate``),
score them with the reward (any object with ``score(samples, responses)``), subtract the cached score
of the SFT model's own answer (the reference baseline), add the per-token KL penalty, compute GAE
advantages, then run ``ppo_epochs`` passes of clipped policy + value updates over minibatches, each
mixed with the SFT next-token loss on SFT data (``ptx_coef``). The math is in :mod:`ppo_losses`; the
roles in :mod:`ppo_models`; rollouts, the baseline cache and the prompt filter in :mod:`ppo_rollout`.

Reproducibility: the prompts of step s, the sampling seed and the minibatch order are functions of
(seed, s) alone, so a run resumed from a checkpoint takes exactly the step an uninterrupted run takes.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.errors import ConfigError, UserError
from chatglm_rlhf.models.generation import Generator, make_generator
from chatglm_rlhf.policy.ppo import losses as L
from chatglm_rlhf.policy.ppo.config import PPOConfig, reward_settings, sampling_temperature, validate
from chatglm_rlhf.policy.ppo.models import PPOModels
from chatglm_rlhf.policy.ppo.rollout import (
    PromptSet,
    Rollout,
    engine_logprob_gap,
    filter_prompts,
    make_rollout,
    prompt_key,
    prompts_for_run,
    reference_baseline,
)
from chatglm_rlhf.reward.protocol import Scorer
from chatglm_rlhf.utils import fsdp as F
from chatglm_rlhf.utils.distributed import Ranks
from chatglm_rlhf.utils.training import (
    check_finite,
    epoch_order,
    make_accelerator,
    open_run,
    save_json,
    set_seed,
)


class PPOTrainer:
    """Orchestrates PPO over ``prompts``; pass ``sft_examples`` (sample, response) to enable ptx.

    The critic-free trainer (:class:`chatglm_rlhf.policy.pg.trainer.PGTrainer`) reuses the loop, the
    prompt preparation (filter, baseline cache), the ptx batches and saving; ``NAME`` names its files
    and messages.
    """

    NAME: ClassVar[str] = "ppo"
    # PPO's own FSDP2 sharding (fsdp=true, set in __init__); off for a subclass with its own __init__.
    fsdp: bool = False

    def __init__(
        self,
        cfg: PPOConfig,
        models: PPOModels,
        scorer: Scorer,
        prompts: list[DialogueSample],
        sft_examples: list[tuple[DialogueSample, str]] | None = None,
        generator: Generator | None = None,
    ):
        validate(cfg)
        self._setup(cfg, models, scorer)
        # fsdp=true: our own FSDP2 sharding (accelerate gives DDP on CPU even with an FSDP plugin).
        # Sharded before anything runs, so the filter and baseline see the layout training uses.
        self.fsdp = cfg.fsdp and self.ranks.count > 1
        if cfg.fsdp and not self.fsdp:
            self.acc.print("ppo: fsdp=true in one process: nothing to shard, running unsharded")
        if self.fsdp:
            models.shard(F.device_mesh(self.acc.device, self.ranks.count))
        self.generator = generator or make_generator(models.actor, models.tokenizer, cfg.generation)
        self.raw_prompts = prompts
        self.ptx = self._encode_ptx(sft_examples or [])
        if cfg.adaptive_kl:
            self.kl_ctl: L.FixedKLController = L.AdaptiveKLController(
                cfg.kl_coef, cfg.kl_target, cfg.kl_horizon
            )
        else:
            self.kl_ctl = L.FixedKLController(cfg.kl_coef)
        self.moments = L.RunningMoments() if cfg.reward_normalize else None
        self.filter_report = None

    # --- setup ---------------------------------------------------------------------------------------

    def _setup(self, cfg, models, scorer: Scorer) -> None:
        """What every trainer on this loop sets up first (PPO, the critic-free one): seed, accelerator,
        ranks (batch sizes must split evenly over them), output folder, the frozen reference's device."""
        self.cfg, self.models, self.scorer = cfg, models, scorer
        set_seed(cfg.seed)
        self.acc = make_accelerator(cfg.mixed_precision, 1, cpu=cfg.cpu)
        self.ranks = Ranks.of(self.acc)
        for key in ("rollout_batch_size", "mini_batch_size"):
            if getattr(cfg, key) % self.ranks.count:
                raise ConfigError(
                    f"{self.NAME}: {key} ({getattr(cfg, key)}) must be a multiple of the number of processes "
                    f"({self.ranks.count}): every rank takes an equal share of each batch"
                )
        self.out = Path(cfg.output_dir)
        if models.reference is not None:  # frozen, so never prepared: place it by hand
            models.reference.to(self.acc.device)

    def _encode_ptx(self, examples: list[tuple[DialogueSample, str]]) -> list:
        if not examples or self.cfg.ptx_coef == 0:
            if self.cfg.ptx_coef > 0:
                self.acc.print(f"{self.NAME}: ptx is off (no SFT examples given)")
            return []
        from chatglm_rlhf.policy.sft import encode_examples

        return encode_examples(self.models.tokenizer, examples, self.cfg.max_length, truncate_response=True)

    def prepare_prompts(self) -> PromptSet:
        """Encode the prompts, filter them (paper), and build the reference-baseline cache.

        With several processes each rank samples its share of the prompts for the filter and the
        baseline; every rank gets all results, and rank 0 alone writes the files.
        """
        from chatglm_rlhf.data.templates import prompt_ids

        cfg, tok = self.cfg, self.models.tokenizer
        if not self.raw_prompts:
            raise UserError(f"{self.NAME}: no prompts")
        ids = [prompt_ids(tok, s, cfg.max_prompt_tokens)[0] for s in self.raw_prompts]
        prompts = PromptSet(
            list(self.raw_prompts), ids, [prompt_key(s, i) for s, i in zip(self.raw_prompts, ids)]
        )
        needed = cfg.steps * cfg.rollout_batch_size  # the prompts a run draws
        prompts = prompts_for_run(prompts, needed, cfg.seed, cfg.prompt_filter)
        if cfg.prompt_filter:
            with F.full_params(self.models.sampler):  # every rank, also one with no prompts to sample
                prompts, self.filter_report = filter_prompts(
                    self.models, prompts, self.scorer, cfg.generation, cfg.filter_k, cfg.filter_eps,
                    self.out / "prompt_filter.jsonl", seed=cfg.seed + 1, progress=cfg.progress,
                    ranks=self.ranks, limit=needed,
                )  # fmt: skip
            self.acc.print(self.filter_report.summary() + f" (details: {self.out / 'prompt_filter.jsonl'})")
            if not prompts.keys:
                raise UserError(
                    f"{self.NAME}: the prompt filter dropped every prompt; lower filter_eps or set "
                    "prompt_filter=false"
                )
        self.baseline: dict[str, float] = {}
        if cfg.reward_baseline:
            # Several identical greedy answers would be pointless: k > 1 always samples.
            settings = replace(cfg.generation, greedy=cfg.baseline_greedy and cfg.baseline_k == 1)
            ref = self.models.reference  # None: the LoRA actor with its adapters off
            with F.full_params(ref if ref is not None else self.models.sampler):
                self.baseline = reference_baseline(
                    self.models, prompts, self.scorer, settings, self.out / "reference_baseline.jsonl",
                    seed=cfg.seed + 2, k=cfg.baseline_k, progress=cfg.progress, ranks=self.ranks,
                )  # fmt: skip
        return prompts

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg, m = self.cfg, self.models
        if m.shared is not None:
            head = list(m.shared.v_head.parameters())
            body = [p for p in m.actor.parameters() if p.requires_grad]
            groups = [{"params": body, "lr": cfg.lr}, {"params": head, "lr": cfg.critic_lr}]
        else:
            actor = [p for p in m.actor.parameters() if p.requires_grad]
            critic = [p for p in m.critic.parameters() if p.requires_grad]
            groups = [{"params": actor, "lr": cfg.lr}, {"params": critic, "lr": cfg.critic_lr}]
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)

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
        opt = self._optimizer()
        sharded = None
        if self.fsdp:  # already sharded: accelerate must not wrap them in DDP; DCP checkpoints them
            self.opt, self.models.prepared = opt, list(self.models.trainable)
            sharded = F.ShardedCheckpoint(self.models.trainable, opt)
        else:  # the training forwards go through the prepared (DDP / FSDP) modules: they sync gradients
            *self.models.prepared, self.opt = acc.prepare(*self.models.trainable, opt)
        ckpt, log, state = open_run(
            cfg.output_dir, acc, cfg.resume, report_to=cfg.report_to, config=cfg, sharded=sharded
        )
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
            every = getattr(cfg, "snapshot_every", 0)  # PPO's key; the critic-free config has none
            if every and step % every == 0 and step < cfg.steps:
                self.save_policy(self.out / "snapshots" / f"step_{step}")
        bar.close()
        log.close()
        result = self._summary()
        result.update(steps=step, seconds=time.time() - t_start)
        self.save(result)
        return result

    def _summary(self) -> dict[str, Any]:
        """The run's summary from rank 0's metrics log, on every rank (other nodes may not see the file)."""
        self.acc.wait_for_everyone()
        result = None
        if self.acc.is_main_process:
            result = summarize(self.out / "metrics.jsonl", self.filter_report)
        if self.ranks.count > 1:
            from accelerate.utils import broadcast_object_list

            result = broadcast_object_list([result])[0]
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
        """One PPO iteration: rollout, score, advantages, ``ppo_epochs`` of minibatch updates."""
        cfg, m = self.cfg, self.models
        rows = self._prompt_rows(step)
        samples = [self.prompts.samples[i] for i in rows]
        t0 = time.perf_counter()
        seed = self.ranks.seed(cfg.seed * 100_003 + step)
        # HF generate over the gathered weights (F.full_params: why not through the shards); a no-op
        # unsharded. An engine with its own weights (vLLM) gets them from sync_weights instead.
        with F.full_params(m.sampler if self.fsdp and not hasattr(self.generator, "sync_weights") else None):
            gens = self.generator.generate([self.prompts.ids[i] for i in rows], 1, cfg.generation, seed=seed)
        gens = [g[0] for g in gens]
        t_gen = time.perf_counter() - t0
        ref = None
        if cfg.reward_baseline:
            ref = torch.tensor([self.baseline[self.prompts.keys[i]] for i in rows], dtype=torch.float32)
        with self.acc.autocast():  # old log-probs in the same precision as the updates' new ones
            rollout = make_rollout(
                m,
                samples,
                gens,
                self.scorer,
                ref,
                reward_settings(cfg),
                self.kl_ctl.value,
                cfg.forward_batch_size,
                self.moments,
                self.ranks,
            )
        gap = engine_logprob_gap(gens, rollout.old_logprobs, rollout.batch.response_mask)
        if gap is not None:  # this rank's rows: logged as the mean over ranks below
            rollout.stats["health/engine_logprob_gap"] = self.ranks.mean_dict({"g": gap})["g"]
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
            **rollout.stats,
            **train_stats,
            "kl_coef": kl_coef,
            "time/generate": t_gen,
            "time/train": t_train,
            "time/sync": t_sync,
            "tokens_per_s/generate": gen_tokens / max(t_gen, 1e-9),
            "tokens_per_s/train": train_tokens / max(t_train, 1e-9),
        }

    def _num_epochs(self) -> int:
        return self.cfg.ppo_epochs

    def _epochs(self, rollout, step: int) -> tuple[dict[str, float], int]:
        """``_num_epochs()`` passes over this rank's rows; a minibatch is ``mini_batch_size`` rows over all
        ranks (each rank's equal share), so every rank makes the same number of updates. Shared with the
        critic-free trainer, whose ``_update`` differs."""
        cfg, n_epochs = self.cfg, self._num_epochs()
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
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
        return {k: v / max(n_updates, 1) for k, v in sums.items()}, tokens

    def _ptx_batch(self, update: int) -> tuple[dict[str, torch.Tensor] | None, bool]:
        """This rank's SFT sequences for optimizer update ``update`` (cycling through the data in a
        seeded order), and whether they count: a rank whose share of ``ptx_batch_size`` is empty runs
        one sequence with weight 0, so that every rank makes the same forward passes."""
        if not self.ptx:
            return None, False
        from chatglm_rlhf.data.collate import collate_encoded

        n, bs = len(self.ptx), self.cfg.ptx_batch_size
        picked = []
        for j in range(update * bs, (update + 1) * bs):
            epoch, k = divmod(j, n)
            picked.append(self.ptx[epoch_order(n, self.cfg.seed + 7, epoch)[k]])
        mine = self.ranks.share(picked)
        return collate_encoded(mine or picked[:1], self.models.tokenizer.pad_token_id), bool(mine)

    def _loss_weights(self, rollout: Rollout, chunks: list, ptx, ptx_counts: bool) -> list[float] | None:
        """With several ranks, a weight per micro-batch (and one for ptx): ``ranks * local tokens / all
        ranks' tokens``. DDP averages the ranks' gradients, so the update is that of the token mean over
        the whole minibatch, however the tokens fall across ranks. None in one process (weights of 1)."""
        if self.ranks.count == 1:
            return None
        local = [float(rollout.batch.response_mask[c].sum()) for c in chunks]
        local.append(float((ptx["labels"][:, 1:] != -100).sum()) if ptx is not None and ptx_counts else 0.0)
        local_t = torch.tensor(local, dtype=torch.float64)
        total = self.ranks.sum(local_t).cpu()
        return [float(self.ranks.count * a / max(float(b), 1.0)) for a, b in zip(local_t, total)]

    def _update(
        self, rollout: Rollout, rows: torch.Tensor, update: int, step: int
    ) -> tuple[dict[str, float], int]:
        """One optimizer step on a minibatch: clipped policy + value loss (+ ptx) in one backward pass."""
        from chatglm_rlhf.policy.losses import sft_loss
        from chatglm_rlhf.policy.ppo.models import response_logprobs

        cfg, acc, m = self.cfg, self.acc, self.models
        mods = m.prepared or m.trainable
        for mod in mods:
            mod.train()
        micro = cfg.micro_batch_size or len(rows)
        chunks = [rows[i : i + micro] for i in range(0, len(rows), micro)]
        stats: dict[str, float] = {}
        tokens = 0
        ptx, ptx_counts = self._ptx_batch(update)
        weights = self._loss_weights(rollout, chunks, ptx, ptx_counts)
        for i, chunk in enumerate(chunks):
            mb = rollout.select(chunk)
            b = mb.batch.to(acc.device)
            mask = b.response_mask
            with self._no_sync(mods, last=i == len(chunks) - 1):
                with acc.autocast():
                    logits, values = m.train_outputs(b)  # through the DDP / FSDP wrappers
                    temp = sampling_temperature(cfg.generation)
                    logprobs = response_logprobs(logits, b, temp)
                    entropy = L.masked_mean(L.entropy_from_logits(logits.float() / temp), mask)
                    pg_loss, ps = L.ppo_policy_loss(
                        logprobs, mb.old_logprobs, mb.advantages, mask, cfg.clip_range
                    )
                    vf_loss, vclip = L.ppo_value_loss(
                        values.float(), mb.old_values, mb.returns, mask, cfg.clip_range_value
                    )
                    ptx_loss = None
                    if ptx is not None and i == 0:  # the ptx term joins the first micro-batch's loss
                        ptx_logits = m.train_lm(
                            input_ids=ptx["input_ids"].to(acc.device),
                            attention_mask=ptx["attention_mask"].to(acc.device),
                        ).logits
                        ptx_loss = sft_loss(ptx_logits, ptx["labels"].to(acc.device))[0]
                        tokens += int(ptx["attention_mask"].sum()) if ptx_counts else 0
                    ppo = L.actor_loss(pg_loss, None, 0.0, entropy, cfg.entropy_coef) + cfg.vf_coef * vf_loss
                    ptx_term = cfg.ptx_coef * ptx_loss if ptx_loss is not None else 0.0
                    if weights is not None:
                        ppo, ptx_term = ppo * weights[i], ptx_term * weights[-1]
                    loss = ppo / len(chunks) + ptx_term
                check_finite(loss, step + 1)
                acc.backward(loss)
            tokens += int(b.attention_mask.sum())
            part = {
                "loss/policy": pg_loss.item(), "loss/value": vf_loss.item(), "entropy": entropy.item(),
                "policy/clip_frac": float(ps.clip_frac), "policy/approx_kl": float(ps.approx_kl),
                "value/clip_frac": float(vclip),
            }  # fmt: skip
            if ptx_loss is not None:
                part["loss/ptx"] = ptx_loss.item() * len(chunks)
            for k, v in part.items():
                stats[k] = stats.get(k, 0.0) + v / len(chunks)
        self._clip_and_step(mods)
        return stats, tokens

    def _no_sync(self, mods: list, last: bool) -> ExitStack:
        """Skip DDP's gradient all-reduce on all but the last micro-batch (it syncs the accumulated sum)."""
        stack = ExitStack()
        if not last and self.fsdp:  # accelerate's no_sync only knows the modules it wrapped
            stack.enter_context(F.no_grad_sync(mods))
        elif not last:
            for mod in mods:
                stack.enter_context(self.acc.no_sync(mod))
        return stack

    def _clip_and_step(self, mods: list) -> None:
        cfg = self.cfg
        if cfg.max_grad_norm > 0:
            # Separately: the critic's large early gradients must not shrink the actor's update.
            for mod in mods:
                params = [p for p in mod.parameters() if p.grad is not None]
                if params and self.fsdp:  # the norm over all ranks' gradient shards
                    F.clip_grad_norm_(params, cfg.max_grad_norm)
                elif params:
                    self.acc.clip_grad_norm_(params, cfg.max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def save(self, result: dict[str, Any]) -> None:
        if self.save_policy(self.out):
            save_json(self.out / f"{self.NAME}_result.json", result)
            (self.out / f"{self.NAME}_config.json").write_text(json.dumps(asdict(self.cfg), indent=2))

    def save_policy(self, out: Path) -> bool:
        """The actor (merged if LoRA) and tokenizer in ``out``, loadable by ``from_pretrained``; True on
        the rank that wrote it."""
        from chatglm_rlhf.policy.ppo.models import save_plain

        acc, m = self.acc, self.models
        acc.wait_for_everyone()
        # Gathered on every rank: under FSDP / ZeRO-3 each rank holds only a shard of the weights.
        main = (m.prepared or m.trainable)[0]
        state = F.full_state_dict(main) if self.fsdp else acc.get_state_dict(main)
        if getattr(m, "shared", None) is not None:  # actor + value head: the actor's weights are "lm."
            state = {k.removeprefix("lm."): v for k, v in state.items() if k.startswith("lm.")}
        if not acc.is_main_process:
            return False
        out.mkdir(parents=True, exist_ok=True)
        save_plain(acc.unwrap_model(m.actor), out, state)
        m.tokenizer.save_pretrained(out)
        return True


def summarize(metrics_path: Path, filter_report=None) -> dict[str, Any]:
    """Per-step series and their spread, from the metrics log (so a resumed run reports all steps)."""
    from chatglm_rlhf.utils.training import read_metrics

    rows = read_metrics(metrics_path)
    out: dict[str, Any] = {}
    for key, name in (("reward/raw", "reward"), ("reward/train", "reward_train"), ("kl", "kl")):
        series = [r[key] for r in rows if key in r]
        out[f"{name}_series"] = series
        out[f"{name}_final"] = series[-1] if series else float("nan")
        out[f"{name}_std"] = float(torch.tensor(series).std()) if len(series) > 1 else 0.0
    within = [r["reward/train_std"] for r in rows if "reward/train_std" in r]
    out["reward_train_within_step_std"] = sum(within) / len(within) if within else float("nan")
    for key in ("loss/ptx", "response_len", "tokens_per_s/generate", "tokens_per_s/train"):
        vals = [r[key] for r in rows if key in r]
        if vals:
            out[key.replace("/", "_") + "_mean"] = sum(vals) / len(vals)
    if filter_report is not None:
        out["prompt_filter"] = {k: getattr(filter_report, k) for k in ("kept", "dropped", "unused")}
    return out
