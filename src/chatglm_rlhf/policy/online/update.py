"""One optimiser step of the online loop: the clipped policy loss (+ the KL loss term, + the value loss
when the estimator trains a critic) (+ ptx), one backward per micro-batch, then clipping and the step.

The loss is ``sum of numerators / denominator of the whole minibatch`` (:func:`policy.losses.aggregate`),
the denominator summed over micro-batches and processes first: splitting a minibatch into micro-batches
or over processes changes nothing (DDP averages the ranks' gradients, so each rank's part is scaled by
the number of ranks).
"""

from __future__ import annotations

from contextlib import ExitStack

import torch

from chatglm_rlhf.policy import losses as L
from chatglm_rlhf.policy.models import lm_forward, response_logprobs
from chatglm_rlhf.policy.online.rollout import Rollout
from chatglm_rlhf.utils import fsdp as F
from chatglm_rlhf.utils.training import check_finite, epoch_order


class UpdateMixin:
    """The update half of :class:`~chatglm_rlhf.policy.online.loop.OnlineTrainer`."""

    def _update(
        self, rollout: Rollout, rows: torch.Tensor, update: int, step: int
    ) -> tuple[dict[str, float], int]:
        """One optimizer step on the minibatch ``rows``; returns its stats and the tokens it trained on."""
        cfg, acc, m = self.cfg, self.acc, self.models
        mods = m.prepared or m.trainable
        for mod in mods:
            mod.train()
        micro = cfg.micro_batch_size or len(rows)
        parts = [rollout.select(rows[i : i + micro]) for i in range(0, len(rows), micro)]
        den = self._denominators(parts)
        ptx, ptx_counts = self._ptx_batch(update)
        ptx_weight = self._ptx_weight(ptx, ptx_counts)
        stats: dict[str, float] = {}
        tokens = 0
        for i, mb in enumerate(parts):
            b = mb.batch.to(acc.device)
            with self._no_sync(mods, last=i == len(parts) - 1):
                with acc.autocast():
                    loss, part = self._loss(mb, b, den)
                    if ptx is not None and i == 0:  # the ptx term joins the first micro-batch's loss
                        ptx_logits = m.train_lm(
                            input_ids=ptx["input_ids"].to(acc.device),
                            attention_mask=ptx["attention_mask"].to(acc.device),
                        ).logits
                        ptx_loss = L.sft_loss(ptx_logits, ptx["labels"].to(acc.device))[0]
                        loss = loss + cfg.ptx_coef * ptx_loss * ptx_weight
                        stats["loss/ptx"] = ptx_loss.item()
                        tokens += int(ptx["attention_mask"].sum()) if ptx_counts else 0
                check_finite(loss, step + 1)
                acc.backward(loss)
            tokens += int(b.attention_mask.sum())
            share = len(mb.batch.input_ids) / len(rows)
            for key, v in part.items():
                stats[key] = stats.get(key, 0.0) + v * share
        self._clip_and_step(mods)
        return stats, tokens

    def _denominators(self, parts: list[Rollout]) -> tuple[float, float]:
        """The policy loss's denominator (by ``loss_agg``) and the value loss's (tokens), over every
        micro-batch of the minibatch and every rank."""
        max_len = self.cfg.generation.max_new_tokens
        local = torch.tensor(
            [sum(float(L.aggregate(p.advantages, p.batch.response_mask, self.loss_agg, max_len)[1]) for p in parts),
             sum(float(p.batch.response_mask.sum()) for p in parts)],
            dtype=torch.float64,
        )  # fmt: skip
        total = self.ranks.sum(local).cpu() if self.ranks.count > 1 else local
        return max(float(total[0]), 1e-9), max(float(total[1]), 1.0)

    def _loss(self, mb: Rollout, b, den: tuple[float, float]) -> tuple[torch.Tensor, dict[str, float]]:
        """The minibatch part's loss (before ptx) and its logged stats."""
        cfg, m, n = self.cfg, self.models, self.ranks.count
        mods = m.prepared or m.trainable
        mask = b.response_mask
        if self.estimator.critic:
            logits, values = m.train_outputs(b)  # through the DDP / FSDP wrappers
        else:
            logits, values = lm_forward(mods[0], b)[0], None
        logprobs = response_logprobs(logits, b, self.temperature)
        entropy = L.masked_mean(L.entropy_from_logits(logits.float() / self.temperature), mask)
        per_token, ps = L.clipped_token_loss(logprobs, mb.old_logprobs, mb.advantages, mask, cfg.clip_range)
        max_len = cfg.generation.max_new_tokens
        pg_num = L.aggregate(per_token, mask, self.loss_agg, max_len)[0]
        num = pg_num
        part = {"policy/clip_frac": float(ps.clip_frac), "policy/approx_kl": float(ps.approx_kl),
                "entropy": float(entropy.detach())}  # fmt: skip
        if self.kl_mode == "loss" and cfg.kl_coef:
            kl_tok = L.k3_kl(logprobs, mb.ref_logprobs, mask)
            num = L.aggregate(per_token + cfg.kl_coef * kl_tok, mask, self.loss_agg, max_len)[0]
            part["loss/kl"] = float(
                (L.aggregate(kl_tok, mask, self.loss_agg, max_len)[0] * n / den[0]).detach()
            )
        loss = num * n / den[0]
        part["loss/policy"] = float((pg_num * n / den[0]).detach())
        if cfg.entropy_coef:
            loss = loss - cfg.entropy_coef * entropy
        if values is not None:
            v_tok, v_clip = L.value_token_loss(
                values.float(), mb.old_values, mb.returns, mask, cfg.clip_range_value
            )
            vf_loss = 0.5 * (L.aggregate(v_tok, mask, "token_mean")[0] * n / den[1])
            loss = loss + cfg.vf_coef * vf_loss
            part.update({"loss/value": float(vf_loss.detach()), "value/clip_frac": float(v_clip)})
        return loss, part

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

    def _ptx_weight(self, ptx, counts: bool) -> float:
        """With several ranks, ``ranks * local ptx tokens / all ranks' ptx tokens``: DDP averages the
        ranks' gradients, so the update is that of the token mean over every rank's SFT sequences."""
        if self.ranks.count == 1 or ptx is None:
            return 1.0
        local = torch.tensor(
            float((ptx["labels"][:, 1:] != -100).sum()) if counts else 0.0, dtype=torch.float64
        )
        total = float(self.ranks.sum(local))
        return float(self.ranks.count * float(local) / max(total, 1.0))

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
