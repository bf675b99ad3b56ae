"""The filter and reward-model stages as functions of paths (the pipeline's stages call them; any data).

``run_filter_stage(comparisons_path, out_dir, cfg=None, gold_fn=None, samples=None) -> metrics``
    Filters ``comparisons_path`` into ``out_dir/filtered.jsonl`` (+ ``filtered.dropped.jsonl``,
    ``filtered.summary.json``). Metrics: ``read``, ``kept`` (labels kept), ``kept_labels`` (the same),
    ``kept_pairs``, ``dropped`` (by reason), ``spammers``, ``pair_agreement``, ``balance`` (per length
    bucket, before / after balancing: ``[{bucket, n, longer_wins_rate}]``) and, when gold labels are
    known (``gold_fn`` or ``meta["gold_label"]``), ``gold_agreement_before`` / ``_after``.

``run_rm_stage(sft_model_dir, train_path, eval_path, out_dir, cfg=None, gold_fn=None, tie_pairs=None,
samples=None)``
    Trains an RM initialised from ``sft_model_dir`` on ``train_path``, saves it to ``out_dir`` and
    evaluates on ``eval_path``. Metrics: ``eval_accuracy`` (vs the file's labels), ``eval`` (the
    full report), ``per_bucket`` (accuracy per length bucket), and with ``gold_fn``: ``gold_accuracy`` (RM
    preference vs gold on the eval pairs that gold decides) and ``length_correlation`` (Pearson of reward difference with length
    difference on gold-tied pairs: ``tie_pairs`` if given, else the eval pairs gold calls a tie).

``gold_fn(sample, a, b) -> "a" | "b" | "tie"``, e.g. ``GoldJudge().compare``. A comparison carries no
sample ``meta`` (where the demo's gold facts live), so pass ``samples`` (e.g. the candidates file's
samples): ``gold_fn`` then gets the sample with that id, and ``c.sample()`` only for ids not in it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chatglm_rlhf.data.schema import Comparison, DialogueSample
from chatglm_rlhf.reward.filtering import FilterConfig
from chatglm_rlhf.reward.rm_config import RMConfig

GoldFn = Callable[[DialogueSample, str, str], str]


def _config(cls, cfg, **fixed):
    from chatglm_rlhf.config import from_dict, to_dict

    data = to_dict(cfg) if isinstance(cfg, cls) else dict(cfg or {})
    data.update(fixed)
    return from_dict(cls, data, where=f"{cls.__name__}")


def sample_of(c: Comparison, samples: dict[str, DialogueSample] | None = None) -> DialogueSample:
    """The sample ``c`` answers: from ``samples`` by id when there (with its ``meta``, which a gold
    judge reads), else ``c.sample()`` (history, prompt and category only)."""
    if samples and c.sample_id in samples:
        return samples[c.sample_id]
    return c.sample()


def _lookup(samples: Sequence[DialogueSample] | None) -> dict[str, DialogueSample] | None:
    return {s.id: s for s in samples} if samples is not None else None


def gold_label(
    c: Comparison, gold_fn: GoldFn | None, samples: dict[str, DialogueSample] | None = None
) -> str | None:
    """The gold label of ``c`` in its own orientation (from ``gold_fn``, else ``meta["gold_label"]``)."""
    if gold_fn is not None:
        return gold_fn(sample_of(c, samples), c.response_a, c.response_b)
    return c.meta.get("gold_label")


def gold_agreement(
    comparisons: Sequence[Comparison],
    gold_fn: GoldFn | None,
    samples: dict[str, DialogueSample] | None = None,
) -> dict[str, Any]:
    """Share of labels equal to gold's: ``all`` (ties count), and ``decisive`` (pairs gold decides)."""
    pairs = [(c.label, gold_label(c, gold_fn, samples)) for c in comparisons]
    pairs = [(lab, g) for lab, g in pairs if g is not None]
    decisive = [(lab, g) for lab, g in pairs if g != "tie"]
    return {
        "n": len(pairs),
        "all": sum(lab == g for lab, g in pairs) / len(pairs) if pairs else None,
        "n_decisive": len(decisive),
        "decisive": sum(lab == g for lab, g in decisive) / len(decisive) if decisive else None,
    }


def run_filter_stage(
    comparisons_path: str | Path,
    out_dir: str | Path,
    cfg: FilterConfig | dict | None = None,
    gold_fn: GoldFn | None = None,
    samples: Sequence[DialogueSample] | None = None,
) -> dict[str, Any]:
    from chatglm_rlhf.reward.filter_run import run_filter, summary

    out = Path(out_dir)
    fcfg = _config(FilterConfig, cfg, input=str(comparisons_path), output=str(out / "filtered.jsonl"))
    result = run_filter(fcfg)
    s = summary(result)
    metrics: dict[str, Any] = {
        "read": s["read"],
        "kept": s["kept_labels"],  # labels, like read and dropped: the funnel adds up
        "kept_labels": s["kept_labels"],
        "kept_pairs": s["kept_pairs"],
        "dropped": s["dropped_by_reason"],
        "spammers": sorted(s["spammers"]),
        "pair_agreement": s["pair_agreement"],
        "balance": balance_rows(s["length_buckets"]),
    }
    from chatglm_rlhf.data.formats import load_comparisons

    raw, _ = load_comparisons(comparisons_path, fcfg.format)
    lookup = _lookup(samples)
    before, after = gold_agreement(raw, gold_fn, lookup), gold_agreement(result.kept, gold_fn, lookup)
    if before["n"]:
        metrics["gold_agreement_before"] = before["decisive"]
        metrics["gold_agreement_after"] = after["decisive"]
        metrics["gold_agreement_all_before"] = before["all"]
        metrics["gold_agreement_all_after"] = after["all"]
    return metrics


def balance_rows(buckets: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The summary's length buckets as the report's rows: before / after balancing, the share of pairs
    whose longer answer won, per bucket (buckets without decided pairs left out)."""
    return {
        when: [
            {"bucket": b["bucket"], "n": b[f"n_{when}"], "longer_wins_rate": b[f"longer_wins_{when}"]}
            for b in buckets
            if b[f"longer_wins_{when}"] is not None
        ]
        for when in ("before", "after")
    }


def split_by_prompt(
    comparisons: Sequence[Comparison], eval_fraction: float, seed: int = 0
) -> tuple[list[Comparison], list[Comparison]]:
    """(train, eval) with every prompt's pairs on one side, so eval prompts are never trained on."""
    from chatglm_rlhf.reward.aggregation import context_key

    keys = sorted({context_key(c) for c in comparisons})
    random.Random(seed).shuffle(keys)
    held = set(keys[: max(1, round(eval_fraction * len(keys)))])
    train = [c for c in comparisons if context_key(c) not in held]
    return train, [c for c in comparisons if context_key(c) in held]


def length_tie_probe(scorer, tie_pairs: Sequence[Comparison]) -> dict[str, Any]:
    """Pearson/Spearman of ``r_a - r_b`` with ``len_a - len_b`` (RM tokens) on gold-tied pairs.

    A length-neutral RM gives ~0; one that learned "longer is better" gives a clearly positive value.
    """
    from chatglm_rlhf.reward.encoding import response_length
    from chatglm_rlhf.reward.evaluation import pearson, spearman

    if not tie_pairs:
        return {"n": 0, "pearson": None, "spearman": None, "longer_wins": None}
    r_a, r_b = scorer.score_comparisons(tie_pairs)
    tok = scorer.tokenizer
    dr = [a - b for a, b in zip(r_a, r_b)]
    dl = [response_length(tok, c.response_a) - response_length(tok, c.response_b) for c in tie_pairs]
    differ = [(r, d) for r, d in zip(dr, dl) if d != 0]
    longer_wins = sum((r > 0) == (d > 0) for r, d in differ) / len(differ) if differ else None
    return {
        "n": len(tie_pairs),
        "pearson": pearson(dr, dl),
        "spearman": spearman(dr, dl),
        "longer_wins": longer_wins,
    }


def rm_gold_accuracy(
    scorer, pairs: Sequence[Comparison], gold_fn: GoldFn, samples: dict[str, DialogueSample] | None = None
) -> dict[str, Any]:
    """Share of gold-decided pairs (unique per prompt and response pair) where the RM agrees with gold."""
    from chatglm_rlhf.reward.aggregation import pair_key

    unique = list({pair_key(c): c for c in pairs}.values())
    golds = [gold_label(c, gold_fn, samples) for c in unique]
    decided = [(c, g) for c, g in zip(unique, golds) if g != "tie"]
    ties = [c for c, g in zip(unique, golds) if g == "tie"]
    if not decided:
        return {"n": 0, "accuracy": None, "ties": ties}
    r_a, r_b = scorer.score_comparisons([c for c, _ in decided])
    hits = [(a > b) == (g == "a") for (_, g), a, b in zip(decided, r_a, r_b)]
    return {"n": len(decided), "accuracy": sum(hits) / len(hits), "ties": ties}


def run_rm_stage(
    sft_model_dir: str | Path,
    train_path: str | Path,
    eval_path: str | Path,
    out_dir: str | Path,
    cfg: RMConfig | dict | None = None,
    gold_fn: GoldFn | None = None,
    tie_pairs: Sequence[Comparison] | None = None,
    samples: Sequence[DialogueSample] | None = None,
) -> dict[str, Any]:
    from chatglm_rlhf.data.formats import load_comparisons
    from chatglm_rlhf.reward.trainer import RMTrainer, load_pairs

    rcfg = _config(RMConfig, cfg, model=str(sft_model_dir), data=str(train_path), output_dir=str(out_dir))
    pairs = load_pairs(rcfg.data, rcfg.format, rcfg.use_ties, rcfg.use_weights, rcfg.strict)
    eval_comparisons, _ = load_comparisons(eval_path, rcfg.format, strict=rcfg.strict)
    trainer = RMTrainer(rcfg)
    result = trainer.train(pairs, eval_comparisons)
    metrics: dict[str, Any] = {
        "train_pairs": len(pairs),
        "steps": result["steps"],
        "train_loss": result["train_loss"],
        "eval_accuracy": result["eval"]["accuracy"],
        "eval": result["eval"],
        "per_bucket": [{"bucket": k, **v} for k, v in result["eval"].get("accuracy_by_bucket", {}).items()],
    }
    if gold_fn is not None:
        scorer = trainer.scorer()
        gold = rm_gold_accuracy(scorer, eval_comparisons, gold_fn, _lookup(samples))
        eval_ties = length_tie_probe(scorer, gold["ties"])
        probe = length_tie_probe(scorer, tie_pairs) if tie_pairs is not None else eval_ties
        metrics.update(
            {
                "gold_accuracy": gold["accuracy"],
                "gold_pairs": gold["n"],
                "length_correlation": probe["pearson"],
                "length_probe": probe,
                "length_probe_eval_ties": eval_ties,
            }
        )
    from chatglm_rlhf.utils.training import save_json

    save_json(Path(out_dir) / "rm_stage_metrics.json", metrics)
    return metrics
