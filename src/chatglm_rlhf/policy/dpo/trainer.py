"""Direct preference optimisation (DPO, conservative DPO, IPO; optional NLL on the chosen response).

* **One forward per pair**: chosen and rejected rows are stacked into one right-padded batch
  (``[chosen_1..B, rejected_1..B]``), so the prompt tokens share one kernel launch.
* **Reference log-probs** are computed once before training and stored on each example (and in
  ``output_dir/ref_logps.json``, reused by ``resume=true``), so no reference model sits in memory while
  training. ``reference=on_the_fly`` computes them every step instead. The reference is ``ref_model``
  when given; with LoRA, the base model with the adapter disabled; otherwise the initial policy (in
  cached mode the policy itself before its first step, on the fly a frozen copy).
* Batches are length-grouped (:func:`~chatglm_rlhf.data.collate.length_grouped_batches`) per epoch with
  a seed of (seed, epoch), so a resumed run sees the same data order.

The loss math is in :mod:`chatglm_rlhf.policy.dpo.losses`; this module orchestrates.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from chatglm_rlhf.data.schema import Comparison
from chatglm_rlhf.data.templates import Encoded
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.policy.dpo.config import DPOConfig
from chatglm_rlhf.policy.dpo.losses import (
    chosen_nll,
    dpo_loss,
    masked_sequence_logps,
    preference_metrics,
)
from chatglm_rlhf.policy.losses import token_logprobs
from chatglm_rlhf.utils.distributed import Ranks
from chatglm_rlhf.utils.files import atomic_save
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
    """One tokenised pair; ``ref_*`` are the reference's summed response log-probs once computed."""

    sample_id: str
    chosen: Encoded
    rejected: Encoded
    ref_chosen: float | None = None
    ref_rejected: float | None = None

    @property
    def length(self) -> int:
        return max(len(self.chosen.input_ids), len(self.rejected.input_ids))


def encode_pairs(
    tokenizer, comparisons: list[Comparison], max_length: int, truncate_response: bool = False
) -> list[PairExample]:
    """Tokenise chosen/rejected with a shared prompt; ties have no chosen side and are counted, not used."""
    from chatglm_rlhf.data.templates import encode_pair

    out, ties, dropped = [], 0, 0
    for c in comparisons:
        if c.label == "tie":
            ties += 1
            continue
        ch, rj = encode_pair(tokenizer, c.sample(), c.chosen, c.rejected, max_length, truncate_response)
        dropped += ch.history_dropped
        out.append(PairExample(c.sample_id, ch, rj))
    if ties:
        print(f"dpo: {ties} ties have no chosen response and are not used")
    if dropped:
        print(f"truncation: dropped {dropped} oldest history turns to fit max_length={max_length}")
    return out


def collate_pairs(examples: list[PairExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows ``[chosen_1..B, rejected_1..B]``, right-padded; ``ref_*`` tensors when every example has them."""
    from chatglm_rlhf.data.collate import collate_encoded

    batch = collate_encoded([e.chosen for e in examples] + [e.rejected for e in examples], pad_id)
    if all(e.ref_chosen is not None for e in examples):
        batch["ref_chosen"] = torch.tensor([e.ref_chosen for e in examples], dtype=torch.float32)
        batch["ref_rejected"] = torch.tensor([e.ref_rejected for e in examples], dtype=torch.float32)
    return batch


def concatenated_logps(model, batch: dict[str, torch.Tensor], device) -> tuple[torch.Tensor, ...]:
    """(chosen logps, rejected logps, chosen lengths, rejected lengths) from one forward of both."""
    ids = batch["input_ids"].to(device)
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"].to(device), use_cache=False).logits
    logps, lengths = masked_sequence_logps(token_logprobs(logits, ids), batch["labels"].to(device))
    b = ids.shape[0] // 2
    return logps[:b], logps[b:], lengths[:b], lengths[b:]


def reference_context(model):
    """With a peft model, a context in which its adapters are off (the base = the LoRA reference)."""
    return model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()


@torch.no_grad()
def reference_logps(
    model,
    examples: list[PairExample],
    batch_size: int,
    pad_id: int,
    device,
    autocast=nullcontext,
    progress: bool = True,
) -> list[tuple[float, float]]:
    """Reference (chosen, rejected) summed log-probs per example, in eval mode, in the examples' order."""
    from chatglm_rlhf.data.collate import length_grouped_batches

    was_training = model.training
    model.eval()
    out: list[tuple[float, float] | None] = [None] * len(examples)
    groups = length_grouped_batches([e.length for e in examples], batch_size, seed=0, shuffle=False)
    with reference_context(model):
        for g in tqdm(
            groups, desc="reference log-probs", leave=False, disable=not progress or len(groups) < 5
        ):
            with autocast():
                c, r, _, _ = concatenated_logps(
                    model, collate_pairs([examples[i] for i in g], pad_id), device
                )
            for j, i in enumerate(g):
                out[i] = (float(c[j]), float(r[j]))
    model.train(was_training)
    return out  # type: ignore[return-value]


def fingerprint(reference_id: str, examples: list[PairExample]) -> str:
    """Identifies (reference, tokenised pairs): a cache of ref log-probs is valid only for the same."""
    h = hashlib.sha1(reference_id.encode())
    for e in examples:
        h.update(json.dumps([e.chosen.input_ids, e.chosen.prompt_len, e.rejected.input_ids]).encode())
    return h.hexdigest()


def _batch_metrics(rows: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    cat = {k: torch.cat([r[k] for r in rows]).float() for k in rows[0]}
    m = {"loss": float(cat["loss"].mean())}
    m.update(preference_metrics(cat["chosen_rewards"], cat["rejected_rewards"]))
    m.update({"logps/chosen": float(cat["pc"].mean()), "logps/rejected": float(cat["pr"].mean())})
    m.update({"length/chosen": float(cat["lc"].mean()), "length/rejected": float(cat["lr"].mean())})
    if "nll" in cat:
        m["nll"] = float(cat["nll"].mean())
    return m


class DPOTrainer:
    """``DPOTrainer(cfg).train(comparisons)``; pass ``model``/``tokenizer`` (and ``ref_model``) to skip loading."""

    def __init__(self, cfg: DPOConfig, model=None, tokenizer=None, ref_model=None):
        self.cfg = cfg
        set_seed(cfg.seed)
        # Accumulation is done by hand (each micro-batch's loss is divided by the pairs of the whole step),
        # so the accelerator must not divide by grad_accum a second time.
        self.acc = make_accelerator(cfg.mixed_precision, 1, cpu=cfg.cpu)
        if model is None or tokenizer is None:
            model, tokenizer = self._load(cfg)
        self.model, self.tokenizer = model, tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if ref_model is None and cfg.ref_model:
            from chatglm_rlhf.models.loading import load_causal_lm

            ref_model = load_causal_lm(
                cfg.ref_model, dtype="fp32", device="cpu", trust_remote_code=cfg.trust_remote_code
            )
        self.ref_model = ref_model
        self.is_lora = hasattr(model, "disable_adapter")
        self._ref_copy = None  # on-the-fly reference for full fine-tuning without ref_model
        self._started = False  # after the first step the policy is no longer its own reference
        self._ref_released = False  # a separate reference model, freed once its log-probs are cached

    @staticmethod
    def _load(cfg: DPOConfig):
        from chatglm_rlhf.models.loading import load_for_training

        return load_for_training(
            cfg.model, "dpo", cfg.trust_remote_code, cfg.lora_r, cfg.lora_alpha, cfg.gradient_checkpointing
        )

    # --- reference ------------------------------------------------------------------------------------

    def _reference_model(self):
        """The model whose log-probs are the reference (the policy itself in a LoRA-off context)."""
        if self._ref_copy is not None:
            return self._ref_copy
        if self.ref_model is not None:
            return self.ref_model.to(self.acc.device)
        if self._started and (self._ref_released or not self.is_lora):
            raise UserError(
                "dpo: the policy has been trained and no longer is the reference; cache reference "
                "log-probs before training (reference=cached) or use reference=on_the_fly"
            )
        if self.is_lora or self.cfg.reference == "cached":
            return self.model  # LoRA: used with the adapter off; else: before the first step
        self._ref_copy = copy.deepcopy(self.acc.unwrap_model(self.model)).requires_grad_(False).eval()
        return self._ref_copy

    def cache_reference(self, examples: list[PairExample], name: str = "train") -> None:
        """Fill ``ref_chosen``/``ref_rejected`` on every example, from ``output_dir`` when cached there."""
        ref = self._reference_model()
        ref_id = self.cfg.ref_model or self.cfg.model or type(ref).__name__
        key = fingerprint(f"{ref_id}|lora={self.is_lora}", examples)
        path = Path(self.cfg.output_dir) / f"ref_logps_{name}.json"
        values = None
        if path.exists():
            stored = json.loads(path.read_text())
            values = stored["values"] if stored.get("fingerprint") == key else None
        if values is None:
            values = reference_logps(
                ref,
                examples,
                self.cfg.batch_size,
                self.pad_id,
                self.acc.device,
                self.acc.autocast,
                progress=self.cfg.progress and self.acc.is_main_process,
            )
            if self.acc.is_main_process:
                save_json(path, {"fingerprint": key, "values": values})
        for e, (c, r) in zip(examples, values):
            e.ref_chosen, e.ref_rejected = float(c), float(r)

    def _ref_for_batch(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        if "ref_chosen" in batch:
            return batch["ref_chosen"].to(self.acc.device), batch["ref_rejected"].to(self.acc.device)
        ref = self._reference_model()
        ref = self.acc.unwrap_model(model) if ref is self.model else ref
        was_training = ref.training
        ref.eval()  # the reference never uses dropout
        with torch.no_grad(), reference_context(ref):
            c, r, _, _ = concatenated_logps(ref, batch, self.acc.device)
        ref.train(was_training)
        return c, r

    # --- training -------------------------------------------------------------------------------------

    def _pair_losses(self, model, batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        pc, pr, lc, lr = concatenated_logps(model, batch, self.acc.device)
        rc, rr = self._ref_for_batch(model, batch)
        out = dpo_loss(pc, pr, rc, rr, cfg.beta, cfg.loss_type, cfg.label_smoothing, lc, lr)
        loss = out.losses
        row = {"chosen_rewards": out.chosen_rewards, "rejected_rewards": out.rejected_rewards}
        if cfg.nll_weight:
            nll = chosen_nll(pc, lc)
            loss = loss + cfg.nll_weight * nll
            row["nll"] = nll.detach()
        row.update({"pc": pc.detach(), "pr": pr.detach(), "lc": lc, "lr": lr})
        return {"loss_vec": loss, **row}

    def train(self, comparisons: list[Comparison], eval_comparisons: list[Comparison] | None = None) -> dict:
        cfg, acc = self.cfg, self.acc
        examples = encode_pairs(self.tokenizer, comparisons, cfg.max_length, cfg.truncate_response)
        if not examples:
            raise UserError("dpo: no training pairs")
        eval_examples = None
        if eval_comparisons:
            eval_examples = encode_pairs(
                self.tokenizer, eval_comparisons, cfg.max_length, cfg.truncate_response
            )
        if cfg.reference == "cached":
            self.cache_reference(examples, "train")
            if eval_examples:
                self.cache_reference(eval_examples, "eval")
            if self.ref_model is not None:  # cached: no reference model in memory while training
                self.ref_model, self._ref_released = None, True
        elif not self.is_lora and self.ref_model is None:
            self._reference_model()  # copy the initial policy before any step changes it
        steps_per_epoch = len(self._epoch_batches(examples, 0))
        total = cfg.max_steps if cfg.max_steps > 0 else max(1, int(cfg.epochs * steps_per_epoch))
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = warmup_schedule(opt, cfg.lr_schedule, cfg.warmup_ratio, total)
        model, opt, sched = acc.prepare(self.model, opt, sched)
        self.model = model
        ckpt, log, state = open_run(cfg.output_dir, acc, cfg.resume, report_to=cfg.report_to, config=cfg)
        step = state["step"]
        self._started = True
        bar = tqdm(total=total, initial=step, desc="dpo", disable=not (cfg.progress and acc.is_main_process))
        t0, metrics, pairs_seen = time.time(), {}, 0
        while step < total:
            epoch, k = divmod(step, steps_per_epoch)
            batch = self._epoch_batches(examples, epoch)[k]
            mine = [examples[i] for i in Ranks.of(acc).share(batch)]
            metrics = self._train_step(model, opt, sched, mine, len(batch), examples[batch[0]], step)
            step += 1
            pairs_seen += len(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['rewards/accuracy']:.2f}")
            if step % cfg.log_every == 0 or step == total:
                log.log(step, train_metrics(metrics, sched.get_last_lr()[0]))
            if cfg.save_every and step % cfg.save_every == 0 and step < total:
                ckpt.save(step)
        bar.close()
        log.close()
        seconds = time.time() - t0
        result = {"steps": step, "pairs": len(examples), "seconds": seconds}
        result["pairs_per_second"] = pairs_seen / seconds if seconds > 0 else 0.0
        result.update({f"train/{k}": v for k, v in metrics.items()})
        if eval_examples:
            result.update({f"eval/{k}": v for k, v in self.evaluate(eval_examples).items()})
        self.save(result)
        return result

    def _epoch_batches(self, examples: list[PairExample], epoch: int) -> list[list[int]]:
        from chatglm_rlhf.data.collate import length_grouped_batches

        cached = getattr(self, "_batches", None)
        if cached is not None and cached[0] == (id(examples), epoch):
            return cached[1]
        per_step = self.cfg.batch_size * self.cfg.grad_accum * self.acc.num_processes
        seed = self.cfg.seed * 100_003 + epoch  # a function of (seed, epoch): resume reproduces it
        batches = length_grouped_batches([e.length for e in examples], per_step, seed=seed, shuffle=True)
        self._batches = ((id(examples), epoch), batches)
        return batches

    def _micro_batches(self, batch: list[PairExample], n_pairs: int, filler: PairExample) -> list[tuple]:
        """(pairs, weight) micro-batches; every rank runs as many as the rank with the most pairs.

        A step's last batch may hold fewer pairs than ``per_step``: ranks short of pairs run the global
        batch's first pair with weight 0 instead, so DDP (one gradient all-reduce per rank) and FSDP /
        ZeRO-3 (parameter gathers in every forward) see the same number of passes on every rank, while
        the zero weight keeps the padding pair out of the update and the metrics.
        """
        bs, n = self.cfg.batch_size, self.acc.num_processes
        micro = [(batch[i : i + bs], 1.0) for i in range(0, len(batch), bs)]
        most = math.ceil(math.ceil(n_pairs / n) / bs)  # rank 0 holds the most: ceil(n_pairs / n)
        return micro + [([filler], 0.0)] * (most - len(micro))

    def _train_step(
        self, model, opt, sched, batch: list[PairExample], n_pairs: int, filler: PairExample, step: int
    ) -> dict[str, float]:
        """One optimizer step on this rank's ``batch``: its share of a global batch of ``n_pairs`` pairs."""
        acc = self.acc
        model.train()
        micro = self._micro_batches(batch, n_pairs, filler)
        rows = []
        for i, (mb, weight) in enumerate(micro):
            ctx = acc.no_sync(model) if i < len(micro) - 1 else nullcontext()
            with ctx, acc.autocast():
                row = self._pair_losses(model, collate_pairs(mb, self.pad_id))
                # The mean over the global step's pairs; DDP averages gradients over ranks, hence the
                # factor num_processes (1 in one process: the update equals one big batch's).
                loss = row["loss_vec"].sum() * acc.num_processes / n_pairs
                if not weight:
                    loss = loss * 0.0
            check_finite(loss, step + 1)
            acc.backward(loss)
            row["loss"] = row.pop("loss_vec").detach()
            if weight:
                rows.append(row)
        if self.cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(model.parameters(), self.cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return _batch_metrics(self._gather_rows(rows))

    def _gather_rows(self, rows: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """Every rank's per-pair rows (metrics describe the global batch, not rank 0's share)."""
        ranks = Ranks.of(self.acc)
        if ranks.count == 1:
            return rows
        return ranks.gather_objects([{k: v.detach().cpu() for k, v in r.items()} for r in rows])

    @torch.no_grad()
    def evaluate(self, examples: list[PairExample]) -> dict[str, float]:
        """Loss, implicit-reward accuracy and margin of the current policy on ``examples`` (eval mode)."""
        from chatglm_rlhf.data.collate import length_grouped_batches

        model = self.model
        was_training = model.training
        model.eval()
        groups = length_grouped_batches([e.length for e in examples], self.cfg.batch_size, 0, shuffle=False)
        rows = []
        for g in groups:
            with self.acc.autocast():
                row = self._pair_losses(model, collate_pairs([examples[i] for i in g], self.pad_id))
            row["loss"] = row.pop("loss_vec")
            rows.append(row)
        model.train(was_training)
        return _batch_metrics(rows)

    def save(self, result: dict) -> None:
        acc, out = self.acc, Path(self.cfg.output_dir)
        acc.wait_for_everyone()
        # Gathered on every rank: under FSDP / ZeRO-3 each rank holds only a shard of the weights.
        state = acc.get_state_dict(self.model)
        if acc.is_main_process:
            unwrapped = acc.unwrap_model(self.model)
            if hasattr(unwrapped, "merge_and_unload"):  # LoRA: save a plain model that from_pretrained loads
                unwrapped, state = copy.deepcopy(unwrapped).merge_and_unload(), None
            with atomic_save(out) as tmp:  # a kill or a full disk never leaves half a model in out
                unwrapped.save_pretrained(tmp, state_dict=state, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp)
            save_json(out / "dpo_result.json", result)
            save_json(out / "dpo_config.json", self.cfg)
