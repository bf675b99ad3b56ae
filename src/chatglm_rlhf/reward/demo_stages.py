"""Pipeline hooks for the filter and reward-model stages (used by the demo; usable on any data).

``run_filter_stage(comparisons_path, out_dir, cfg=None, gold_fn=None, samples=None) -> metrics``
    Filters ``comparisons_path`` into ``out_dir/filtered.jsonl`` (+ ``filtered.dropped.jsonl``,
    ``filtered.summary.json``). Metrics: ``filter.read``, ``filter.kept_labels``, ``filter.kept_pairs``,
    ``filter.dropped`` (by reason), ``filter.spammers``, ``filter.pair_agreement`` and, when gold labels
    are known (``gold_fn`` or ``meta["gold_label"]``), ``filter.gold_agreement_before`` / ``_after``.

``run_rm_stage(sft_model_dir, train_path, eval_path, out_dir, cfg=None, gold_fn=None, tie_pairs=None,
samples=None)``
    Trains an RM initialised from ``sft_model_dir`` on ``train_path``, saves it to ``out_dir`` and
    evaluates on ``eval_path``. Metrics: ``rm.eval_accuracy`` (vs the file's labels), ``rm.eval`` (the
    full report), and with ``gold_fn``: ``rm.gold_accuracy`` (RM preference vs gold on the eval pairs
    that gold decides) and ``rm.length_correlation`` (Pearson of reward difference with length
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
        "filter.read": s["read"],
        "filter.kept_labels": s["kept_labels"],
        "filter.kept_pairs": s["kept_pairs"],
        "filter.dropped": s["dropped_by_reason"],
        "filter.spammers": sorted(s["spammers"]),
        "filter.pair_agreement": s["pair_agreement"],
    }
    from chatglm_rlhf.data.formats import load_comparisons

    raw, _ = load_comparisons(comparisons_path, fcfg.format)
    lookup = _lookup(samples)
    before, after = gold_agreement(raw, gold_fn, lookup), gold_agreement(result.kept, gold_fn, lookup)
    if before["n"]:
        metrics["filter.gold_agreement_before"] = before["decisive"]
        metrics["filter.gold_agreement_after"] = after["decisive"]
        metrics["filter.gold_agreement_all_before"] = before["all"]
        metrics["filter.gold_agreement_all_after"] = after["all"]
    return metrics


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
    pairs = load_pairs(rcfg.data, rcfg.format, rcfg.use_ties, rcfg.use_weights)
    eval_comparisons, _ = load_comparisons(eval_path, rcfg.format)
    trainer = RMTrainer(rcfg)
    result = trainer.train(pairs, eval_comparisons)
    metrics: dict[str, Any] = {
        "rm.train_pairs": len(pairs),
        "rm.steps": result["steps"],
        "rm.train_loss": result["train_loss"],
        "rm.eval_accuracy": result["eval"]["accuracy"],
        "rm.eval": result["eval"],
    }
    if gold_fn is not None:
        scorer = trainer.scorer()
        gold = rm_gold_accuracy(scorer, eval_comparisons, gold_fn, _lookup(samples))
        eval_ties = length_tie_probe(scorer, gold["ties"])
        probe = length_tie_probe(scorer, tie_pairs) if tie_pairs is not None else eval_ties
        metrics.update(
            {
                "rm.gold_accuracy": gold["accuracy"],
                "rm.gold_pairs": gold["n"],
                "rm.length_correlation": probe["pearson"],
                "rm.length_probe": probe,
                "rm.length_probe_eval_ties": eval_ties,
            }
        )
    from chatglm_rlhf.utils.training import save_json

    save_json(Path(out_dir) / "rm_stage_metrics.json", metrics)
    return metrics


def filler_tie_pairs(samples: Sequence[DialogueSample], judge=None, seed: int = 0) -> list[Comparison]:
    """Demo world only: for each sample, a good answer vs the same answer with polite filler.

    The gold judge calls these an exact tie of different lengths, so they isolate length bias. Pairs
    that gold does not call a tie are left out (none are expected).
    """
    from chatglm_rlhf.tasks.demo import GoldJudge
    from chatglm_rlhf.tasks.demo import world as W

    judge = judge or GoldJudge()
    rng = random.Random(f"filler-ties|{seed}")
    out = []
    for s in samples:
        from chatglm_rlhf.tasks.demo.demonstrations import response_for

        good = response_for(s, "good", rng)
        if s.category == "harmful":
            padded = good + rng.choice(W.HARMFUL_FILLER_SUFFIXES)
        else:
            padded = rng.choice(W.FILLER_PREFIXES) + good + rng.choice(W.FILLER_SUFFIXES)
        a_first = rng.random() < 0.5
        a, b = (padded, good) if a_first else (good, padded)
        if judge.compare(s, a, b) == "tie":
            out.append(Comparison(s.id, s.prompt, a, b, "tie", history=list(s.history), category=s.category))
    return out
