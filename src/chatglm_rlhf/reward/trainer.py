"""Reward-model training: Bradley–Terry loss on chosen/rejected pairs, both scored in one forward pass.

Efficiency: each micro-batch stacks its chosen and rejected sequences into one ``(2B, T)`` batch (one
forward and one backward instead of two), and micro-batches are formed from pairs of similar length
(``length_grouped_batches``) so little compute goes to padding. Gradient accumulation divides by the
weight of the whole optimizer step, so k micro-batches give the same update as one k-times-larger batch.
The loop runs on CPU, one GPU or many through accelerate; NaN guard, checkpoints and resume as in SFT.
With n processes, each optimizer step's micro-batches are dealt out to the ranks: the step weight and the
logged metrics are summed over ranks, so n processes with ``grad_accum=k`` make the updates of one process
with ``grad_accum=n*k``.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from chatglm_rlhf.config import to_dict
from chatglm_rlhf.data.schema import Comparison, DialogueSample
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.reward.losses import (
    head_orthogonality,
    length_decorrelation,
    margin_from_strength,
    pair_accuracy,
    reward_loss,
)
from chatglm_rlhf.reward.rm_config import RMConfig
from chatglm_rlhf.utils.distributed import Ranks
from chatglm_rlhf.utils.training import (
    check_finite,
    make_accelerator,
    open_run,
    save_json,
    set_seed,
    train_metrics,
    warmup_schedule,
)


@dataclass
class PairExample:
    sample: DialogueSample
    chosen: str
    rejected: str
    target: float = 1.0  # P(chosen preferred): 1, or 0.5 for a tie
    strength: float = math.nan
    weight: float = 1.0


@dataclass
class EncodedPair:
    chosen: list[int]
    rejected: list[int]
    target: float
    strength: float
    weight: float
    lengths: tuple[int, int] = (0, 0)  # words of the chosen and the rejected response (ODIN's length)

    def __len__(self) -> int:
        return max(len(self.chosen), len(self.rejected))


def pairs_from_comparisons(
    comparisons: list[Comparison], use_ties: bool = True, use_weights: bool = True
) -> list[PairExample]:
    out = []
    for c in comparisons:
        weight = float(c.meta.get("weight", 1.0)) if use_weights else 1.0
        strength = float(c.strength) if c.strength is not None else math.nan
        if c.label == "tie":
            if use_ties:
                out.append(PairExample(c.sample(), c.response_a, c.response_b, 0.5, math.nan, weight))
            continue
        out.append(PairExample(c.sample(), c.chosen, c.rejected, 1.0, strength, weight))
    return out


def load_pairs(
    path: str, fmt: str = "auto", use_ties: bool = True, use_weights: bool = True, strict: bool = False
):
    from chatglm_rlhf.data.formats import load_comparisons

    comparisons, report = load_comparisons(path, fmt, strict=strict)
    report.print()
    return pairs_from_comparisons(comparisons, use_ties, use_weights)


def encode_pairs(tokenizer, pairs: list[PairExample], max_length: int) -> list[EncodedPair]:
    from chatglm_rlhf.reward.encoding import encode_for_rm, truncation_summary

    with truncation_summary(f"rm: {len(pairs)} pairs"):
        return [
            EncodedPair(
                encode_for_rm(tokenizer, p.sample, p.chosen, max_length),
                encode_for_rm(tokenizer, p.sample, p.rejected, max_length),
                p.target,
                p.strength,
                p.weight,
                (len(p.chosen.split()), len(p.rejected.split())),
            )
            for p in pairs
        ]


def collate_pairs(batch: list[EncodedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen rows then rejected rows in one right-padded ``(2B, T)`` batch, plus per-pair tensors."""
    from chatglm_rlhf.data.collate import pad_sequences

    seqs = [p.chosen for p in batch] + [p.rejected for p in batch]
    return {
        "input_ids": pad_sequences(seqs, pad_id),
        "attention_mask": pad_sequences([[1] * len(s) for s in seqs], 0),
        "target": torch.tensor([p.target for p in batch], dtype=torch.float32),
        "strength": torch.tensor([p.strength for p in batch], dtype=torch.float32),
        "weight": torch.tensor([p.weight for p in batch], dtype=torch.float32),
        "lengths": torch.tensor(
            [p.lengths[0] for p in batch] + [p.lengths[1] for p in batch], dtype=torch.float32
        ),
    }


def micro_batches(encoded: list[EncodedPair], batch_size: int, seed: int, grouped: bool) -> list[list[int]]:
    """One epoch's micro-batches of pair indices (a function of the seed alone, for resume)."""
    from chatglm_rlhf.data.collate import length_grouped_batches
    from chatglm_rlhf.utils.training import epoch_order

    if grouped:
        return length_grouped_batches([len(p) for p in encoded], batch_size, seed=seed)
    order = epoch_order(len(encoded), seed, 0)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class RMTrainer:
    def __init__(self, cfg: RMConfig, model=None, tokenizer=None):
        self.cfg = cfg
        set_seed(cfg.seed)
        # grad_accum=1 for accelerate: we accumulate ourselves and divide by the step's total weight;
        # accelerate's own accumulation would divide every micro-batch loss by grad_accum once more.
        self.acc = make_accelerator(cfg.mixed_precision, 1, cpu=cfg.cpu)
        if model is None or tokenizer is None:
            from chatglm_rlhf.reward.model import load_reward_model

            model, tokenizer = load_reward_model(
                cfg.model,
                trust_remote_code=cfg.trust_remote_code,
                lora_r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                gradient_checkpointing=cfg.gradient_checkpointing,
                heads=2 if cfg.length_head else 1,
            )
        self.model, self.tokenizer = model, tokenizer
        self.pad_id = tokenizer.pad_token_id

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        head, body = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                is_head = any(part in ("score", "classifier") for part in name.split("."))
                (head if is_head else body).append(p)
        groups = [{"params": body, "lr": cfg.lr}]
        if head:
            groups.append({"params": head, "lr": cfg.head_lr or cfg.lr})
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, weight_decay=cfg.weight_decay)

    def train(self, pairs: list[PairExample], eval_comparisons: list[Comparison] | None = None) -> dict:
        cfg, acc = self.cfg, self.acc
        enc = encode_pairs(self.tokenizer, pairs, cfg.max_length)
        if not enc:
            raise UserError("rm: no training pairs")
        per_step = cfg.grad_accum * acc.num_processes
        n_micro = math.ceil(len(enc) / cfg.batch_size)
        steps_per_epoch = max(1, math.ceil(n_micro / per_step))
        total = cfg.max_steps if cfg.max_steps > 0 else max(1, int(cfg.epochs * steps_per_epoch))
        opt = self._optimizer()
        sched = warmup_schedule(opt, cfg.lr_schedule, cfg.warmup_ratio, total)
        model, opt, sched = acc.prepare(self.model, opt, sched)
        self.prepared = model  # the wrapped model: save() gathers its state dict on every rank
        ckpt, log, state = open_run(cfg.output_dir, acc, cfg.resume, report_to=cfg.report_to, config=cfg)
        step = state["step"]
        bar = tqdm(total=total, initial=step, desc="rm", disable=not (cfg.progress and acc.is_main_process))
        t0, stats = time.time(), {"loss": float("nan"), "accuracy": float("nan")}
        pairs_done = 0
        epoch_cache: dict[int, list[list[int]]] = {}
        while step < total:
            epoch, k = divmod(step, steps_per_epoch)
            if epoch not in epoch_cache:
                epoch_cache.clear()
                epoch_cache[epoch] = micro_batches(
                    enc, cfg.batch_size, cfg.seed * 1000 + epoch, cfg.length_grouping
                )
            step_mbs = epoch_cache[epoch][k * per_step : (k + 1) * per_step]
            mine, pad = self._rank_share(step_mbs, enc)
            stats = self._train_step(model, opt, sched, mine, step, pad)
            pairs_done += sum(len(mb) for mb in step_mbs)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['accuracy']:.2f}")
            if step % cfg.log_every == 0 or step == total:
                log.log(step, train_metrics(stats, sched.get_last_lr()[0]))
            if cfg.save_every and step % cfg.save_every == 0 and step < total:
                ckpt.save(step)
        bar.close()
        log.close()
        seconds = time.time() - t0
        result = {"steps": step, "train_loss": stats["loss"], "train_accuracy": stats["accuracy"]}
        # Pairs of all ranks in this run (a resumed run counts only the steps it ran).
        result.update(seconds=seconds, pairs=pairs_done, pairs_per_second=pairs_done / max(seconds, 1e-9))
        self.save(result)  # before the eval: a failing eval must not lose the trained model
        if eval_comparisons and acc.is_main_process:
            result["eval"] = self.evaluate(eval_comparisons)
            save_json(Path(cfg.output_dir) / "rm_result.json", result)
        return result

    def _rank_share(
        self, step_mbs: list[list[int]], enc: list[EncodedPair]
    ) -> tuple[list[list[EncodedPair]], list[list[EncodedPair]]]:
        """This rank's micro-batches of one optimizer step, and its weight-0 padding micro-batches.

        The step's micro-batches are dealt out round-robin. The epoch's last step may hold fewer than
        ``grad_accum x processes``; a rank left with fewer then runs the step's first pair with weight 0
        instead (not a pair twice), so that every rank runs the same number of forward/backward passes
        (DDP's gradient all-reduce and FSDP / ZeRO-3's parameter gathers need every rank) while the update
        and the metrics equal those of one process.
        """
        acc = self.acc
        mine = [[enc[i] for i in mb] for mb in Ranks.of(acc).share(step_mbs)]
        passes = math.ceil(len(step_mbs) / acc.num_processes)
        filler = [enc[step_mbs[0][0]]]
        return mine, [filler] * (passes - len(mine))

    def _train_step(
        self,
        model,
        opt,
        sched,
        micro: list[list[EncodedPair]],
        step: int,
        pad: list[list[EncodedPair]] | None = None,
    ) -> dict[str, float]:
        """One optimizer step on this rank's ``micro``-batches, then ``pad`` (weight-0 passes).

        Every rank divides by the pair weight of the whole global step (all-reduced); DDP averages the
        gradients over ranks, hence the factor ``num_processes``: the update equals one process's.
        """
        from chatglm_rlhf.reward.model import head_scores

        cfg, acc = self.cfg, self.acc
        model.train()
        local_weight = sum(p.weight for mb in micro for p in mb)
        # float64: in one process the sum is the plain Python sum it always was.
        step_weight = float(
            acc.reduce(torch.tensor(local_weight, dtype=torch.float64, device=acc.device), "sum")
        )
        passes = [(mb, True) for mb in micro] + [(mb, False) for mb in pad or []]
        loss_total, hits, n = 0.0, 0.0, 0
        for i, (mb, real) in enumerate(passes):
            b = {k: v.to(acc.device) for k, v in collate_pairs(mb, self.pad_id).items()}
            ctx = acc.no_sync(model) if i < len(passes) - 1 else nullcontext()
            with ctx, acc.autocast():
                heads = head_scores(model, b["input_ids"], b["attention_mask"])
                r = heads.sum(-1)  # BT on the sum of the heads (one head: the reward itself)
                r_c, r_r = r[: len(mb)], r[len(mb) :]
                margin = margin_from_strength(b["strength"], cfg.margin_scale) if cfg.margin_scale else None
                loss = reward_loss(
                    r_c, r_r, margin=margin, target=b["target"], weight=b["weight"],
                    reg_coef=cfg.reg_coef, center_coef=cfg.center_coef, reduction="sum",
                ) / max(step_weight, 1e-12)  # fmt: skip
                if cfg.length_head:  # this micro-batch's share of the step, like its pairs' BT terms
                    loss = loss + self._length_terms(model, heads, b) * float(b["weight"].sum()) / max(
                        step_weight, 1e-12
                    )
                scaled = loss * acc.num_processes if real else loss * 0.0
            check_finite(loss, step + 1)
            acc.backward(scaled)
            if not real:
                continue  # padding: in the pass count, not in the update or the metrics
            loss_total += float(loss.detach())
            decided = b["target"] >= 1.0
            if decided.any():
                hits += float(pair_accuracy(r_c[decided].detach(), r_r[decided].detach())) * int(
                    decided.sum()
                )
                n += int(decided.sum())
        if cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        # The metrics of the global batch: every rank's loss share, hits and decided pairs summed.
        totals = acc.reduce(
            torch.tensor([loss_total, hits, n], dtype=torch.float64, device=acc.device), "sum"
        )
        loss_total, hits, n = float(totals[0]), float(totals[1]), int(totals[2])
        return {"loss": loss_total, "accuracy": hits / n if n else float("nan")}

    def _length_terms(self, model, heads: torch.Tensor, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """ODIN's extra terms: the quality head uncorrelated with length, the length head correlated,
        and the two heads' weights orthogonal (reward/losses.py)."""
        from chatglm_rlhf.reward.model import score_head

        w = score_head(self.acc.unwrap_model(model)).weight
        return self.cfg.length_coef * length_decorrelation(heads[:, 0], heads[:, 1], b["lengths"]) + (
            self.cfg.ortho_coef * head_orthogonality(w[0], w[1])
        )

    def scorer(self):
        from chatglm_rlhf.reward.scorer import RewardScorer

        return RewardScorer(
            self.acc.unwrap_model(self.model), self.tokenizer, self.cfg.max_length, 2 * self.cfg.batch_size
        )

    def evaluate(self, comparisons: list[Comparison]) -> dict:
        from chatglm_rlhf.reward.evaluation import evaluate_comparisons

        return evaluate_comparisons(self.scorer(), comparisons, self.cfg.eval_buckets)

    def save(self, result: dict) -> None:
        from chatglm_rlhf.reward.model import save_reward_model

        acc, out = self.acc, Path(self.cfg.output_dir)
        acc.wait_for_everyone()
        # Gathered on every rank: under FSDP / ZeRO-3 each rank holds only a shard of the weights.
        state = acc.get_state_dict(getattr(self, "prepared", self.model))
        if acc.is_main_process:
            model = acc.unwrap_model(self.model)
            if hasattr(model, "merge_and_unload"):  # LoRA: save (and keep scoring with) the merged model
                model, state = model.merge_and_unload(), None
                self.model = model
            info = {"max_length": self.cfg.max_length}
            if self.cfg.length_head:  # the scorer uses head 0 (quality); head 1 is length
                info.update(heads=2, head_names=["quality", "length"])
            save_reward_model(model, self.tokenizer, out, info, state_dict=state)
            save_json(out / "rm_result.json", result)
            save_json(out / "rm_config.json", to_dict(self.cfg))


def run_rm_train(cfg: RMConfig) -> dict:
    from chatglm_rlhf.data.formats import load_comparisons

    if not cfg.model:
        raise UserError("rm train: model=... is required (an SFT checkpoint, an encoder, or a saved RM)")
    if not cfg.data:
        raise UserError("rm train: data=... is required")
    pairs = load_pairs(cfg.data, cfg.format, cfg.use_ties, cfg.use_weights, cfg.strict)
    eval_comparisons = None
    if cfg.eval_data:
        eval_comparisons, report = load_comparisons(cfg.eval_data, cfg.format, strict=cfg.strict)
        report.print()
    return RMTrainer(cfg).train(pairs, eval_comparisons)
