"""What the online loop does before and after its iterations: the accelerator and ranks, the ptx data,
the prompts (filter, reference baseline), the optimiser, the summary and saving the policy."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.errors import ConfigError, UserError
from chatglm_rlhf.policy.online.prompts import (
    PromptSet,
    filter_prompts,
    prompt_key,
    prompts_for_run,
    reference_baseline,
)
from chatglm_rlhf.reward.protocol import Scorer
from chatglm_rlhf.utils import fsdp as F
from chatglm_rlhf.utils.distributed import Ranks
from chatglm_rlhf.utils.files import atomic_save
from chatglm_rlhf.utils.training import make_accelerator, save_json, set_seed


class LoopSetup:
    """The parts of :class:`~chatglm_rlhf.policy.online.loop.OnlineTrainer` around the iterations."""

    def _setup(self, cfg, models, scorer: Scorer) -> None:
        """Seed, accelerator, ranks (batch sizes must split evenly over them), output folder, the frozen
        reference's device, and FSDP2 sharding (before anything runs, so the filter and the baseline see
        the layout training uses)."""
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
        # fsdp=true: our own FSDP2 sharding (accelerate gives DDP on CPU even with an FSDP plugin).
        self.fsdp = cfg.fsdp and self.ranks.count > 1
        if cfg.fsdp and not self.fsdp:
            self.acc.print(f"{self.NAME}: fsdp=true in one process: nothing to shard, running unsharded")
        if self.fsdp:
            models.shard(F.device_mesh(self.acc.device, self.ranks.count))

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
            from chatglm_rlhf.utils.console import quiet

            if not quiet():  # a pipeline stage: the counts are in its metrics (prompt_filter)
                self.acc.print(
                    self.filter_report.summary() + f" (details: {self.out / 'prompt_filter.jsonl'})"
                )
            if not prompts.keys:
                raise UserError(
                    f"{self.NAME}: the prompt filter dropped every prompt; lower filter_eps or set prompt_filter=false"
                )
        self.baseline: dict[str, float] = {}
        self.baseline_noise: dict[str, Any] | None = None
        if self.use_baseline and cfg.baseline_from_filter and self.filter_report is not None:
            # The filter's k answers are samples of the reference already (the policy starts as it, see
            # validate): their mean reward is a k-sample baseline without a second pass over the prompts.
            self.baseline = {key: sum(v) / len(v) for key, v in self.filter_report.kept_scores.items()}
            self.baseline_noise = self._baseline_noise(cfg.filter_k)
        elif self.use_baseline:
            # Several identical greedy answers would be pointless: k > 1 always samples.
            settings = replace(cfg.generation, greedy=cfg.baseline_greedy and cfg.baseline_k == 1)
            ref = self.models.reference  # None: the LoRA actor with its adapters off
            with F.full_params(ref if ref is not None else self.models.sampler):
                self.baseline = reference_baseline(
                    self.models, prompts, self.scorer, settings, self.out / "reference_baseline.jsonl",
                    seed=cfg.seed + 2, k=cfg.baseline_k, progress=cfg.progress, ranks=self.ranks,
                )  # fmt: skip
            self.baseline_noise = self._baseline_noise(cfg.baseline_k)
        return prompts

    def _baseline_noise(self, answers: int) -> dict[str, Any] | None:
        """From the filter's k answers per prompt: is ``baseline_k`` enough (policy/online/baseline_noise)?
        Warns when it is not; rank 0 (which wrote the filter's file) only."""
        from chatglm_rlhf.policy.online.baseline_noise import baseline_advice, variance_split

        path = self.out / "prompt_filter.jsonl"
        if not (self.ranks.is_main and path.exists()):
            return None
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        split = variance_split([r.get("scores") or [] for r in rows])
        if split is None:
            return None
        advice = baseline_advice(split, answers)
        if advice:
            print(f"{self.NAME}: warning: {advice}")
        return {**split, "reference_answers": answers, "advice": advice}

    def _optimizer(self) -> torch.optim.Optimizer:
        """AdamW: the actor at ``lr``; the critic (or the shared backbone's value head) at ``critic_lr``."""
        cfg, m = self.cfg, self.models
        groups = [{"params": [p for p in m.actor.parameters() if p.requires_grad], "lr": cfg.lr}]
        if getattr(m, "shared", None) is not None:
            groups.append({"params": list(m.shared.v_head.parameters()), "lr": cfg.critic_lr})
        elif getattr(m, "critic", None) is not None:
            groups.append(
                {"params": [p for p in m.critic.parameters() if p.requires_grad], "lr": cfg.critic_lr}
            )
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)

    def _prepare_optimizer(self):
        """The optimiser, and the training modules wrapped for several processes (DDP through
        accelerate, or our FSDP2 sharding, whose checkpoint this returns for ``open_run``)."""
        opt = self._optimizer()
        if self.fsdp:  # already sharded: accelerate must not wrap them in DDP; DCP checkpoints them
            self.opt, self.models.prepared = opt, list(self.models.trainable)
            return F.ShardedCheckpoint(self.models.trainable, opt)
        # The training forwards go through the prepared (DDP / FSDP) modules: they sync gradients.
        *self.models.prepared, self.opt = self.acc.prepare(*self.models.trainable, opt)
        return None

    def _summary(self) -> dict[str, Any]:
        """The run's summary from rank 0's metrics log, on every rank (other nodes may not see the file)."""
        self.acc.wait_for_everyone()
        result = None
        if self.acc.is_main_process:
            result = summarize(self.out / "metrics.jsonl", self.filter_report)
            if getattr(self, "baseline_noise", None):
                result["baseline_noise"] = self.baseline_noise
        if self.ranks.count > 1:
            from accelerate.utils import broadcast_object_list

            result = broadcast_object_list([result])[0]
        return result

    def save(self, result: dict[str, Any]) -> None:
        if self.save_policy(self.out):
            save_json(self.out / f"{self.NAME}_result.json", result)
            save_json(self.out / f"{self.NAME}_config.json", asdict(self.cfg))

    def save_policy(self, out: Path) -> bool:
        """The actor (merged if LoRA) and tokenizer in ``out``, loadable by ``from_pretrained``; True on
        the rank that wrote it."""
        from chatglm_rlhf.policy.models import save_plain

        acc, m = self.acc, self.models
        acc.wait_for_everyone()
        # Gathered on every rank: under FSDP / ZeRO-3 each rank holds only a shard of the weights.
        main = (m.prepared or m.trainable)[0]
        state = F.full_state_dict(main) if self.fsdp else acc.get_state_dict(main)
        if getattr(m, "shared", None) is not None:  # actor + value head: the actor's weights are "lm."
            state = {k.removeprefix("lm."): v for k, v in state.items() if k.startswith("lm.")}
        if not acc.is_main_process:
            return False
        with atomic_save(out) as tmp:  # a kill or a full disk never leaves half a model in out
            save_plain(acc.unwrap_model(m.actor), tmp, state)
            m.tokenizer.save_pretrained(tmp)
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
