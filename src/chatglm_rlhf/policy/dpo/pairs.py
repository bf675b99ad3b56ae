"""Preference pairs from the policy's own samples, labelled by a scorer (DPO's ``pairs_from=rm``).

The paper "separates data construction from annotation": the policy samples k responses per prompt,
the reward model scores them, and the best and the worst become one chosen/rejected pair. Prompts whose
scores barely differ (spread below ``min_spread``) carry mostly RM noise, so they are skipped and
counted, never dropped silently.

``scorer`` is anything with ``score(samples: list[DialogueSample], responses: list[str]) -> list[float]``
(the reward model's ``RewardScorer``, the demo's gold judge, a test fake).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from chatglm_rlhf.data.schema import Comparison, DialogueSample
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.models.generation import GenerationSettings, decode_response
from chatglm_rlhf.reward.protocol import Scorer
from chatglm_rlhf.utils.distributed import Ranks


@dataclass
class PairStats:
    prompts: int = 0
    candidates: int = 0
    unfinished: int = 0  # candidates cut at max_new_tokens
    pairs: int = 0
    skipped_small_spread: int = 0
    min_spread: float = 0.0
    mean_spread: float = 0.0  # over kept pairs
    mean_chosen_score: float = 0.0
    mean_rejected_score: float = 0.0
    mean_chosen_chars: float = 0.0
    mean_rejected_chars: float = 0.0
    skipped_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def score_candidates(
    scorer: Scorer, samples: list[DialogueSample], candidates: list[list[str]]
) -> list[list[float]]:
    """Score every candidate in one call; checks the scorer returned one finite number per response."""
    flat_samples = [s for s, cands in zip(samples, candidates) for _ in cands]
    flat = [r for cands in candidates for r in cands]
    scores = [float(x) for x in scorer.score(flat_samples, flat)]
    if len(scores) != len(flat):
        raise UserError(f"scorer returned {len(scores)} scores for {len(flat)} responses")
    bad = [i for i, x in enumerate(scores) if not math.isfinite(x)]
    if bad:
        raise UserError(f"scorer returned a non-finite score ({scores[bad[0]]}) for {flat[bad[0]][:60]!r}")
    out, i = [], 0
    for cands in candidates:
        out.append(scores[i : i + len(cands)])
        i += len(cands)
    return out


def best_vs_worst(
    sample: DialogueSample, responses: list[str], scores: list[float], k: int, finished: list[bool]
) -> Comparison:
    """Highest- vs lowest-scored response as a ``label="a"`` comparison (first index wins ties)."""
    hi = max(range(len(scores)), key=lambda i: (scores[i], -i))
    lo = min(range(len(scores)), key=lambda i: (scores[i], i))
    return Comparison(
        sample_id=sample.id,
        prompt=sample.prompt,
        response_a=responses[hi],
        response_b=responses[lo],
        label="a",
        history=list(sample.history),
        strength=None,
        scores={"a": {"reward": scores[hi]}, "b": {"reward": scores[lo]}},
        annotator="policy-samples+scorer",
        category=sample.category,
        meta={
            "source": "pairs_from_policy",
            "k": k,
            "spread": scores[hi] - scores[lo],
            "finished_a": finished[hi],
            "finished_b": finished[lo],
        },
    )


def pairs_from_policy(
    model,
    tokenizer,
    samples: list[DialogueSample],
    scorer: Scorer,
    k: int = 4,
    settings: GenerationSettings | None = None,
    min_spread: float = 0.0,
    seed: int = 0,
    max_prompt_tokens: int | None = None,
    generator=None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> tuple[list[Comparison], PairStats]:
    """Sample ``k`` responses per prompt, score them, keep best vs worst where the spread >= ``min_spread``.

    A prompt whose candidates all score the same is skipped even at ``min_spread=0``: it states no
    preference. Skipped prompts are counted (and listed) in the stats; candidates cut at
    ``settings.max_new_tokens`` are counted in ``stats.unfinished`` and flagged in each pair's meta.

    ``generator`` defaults to ``make_generator(model, tokenizer, settings)`` (pass another backend, e.g. vLLM, to
    replace it). ``shard=(rank, world_size)`` splits the work over processes: each samples and scores
    every world_size-th prompt (its own seed), the results are gathered, and every process returns the
    same pairs. Returns the comparisons (in the prompts' order) and :class:`PairStats`.
    """
    if k < 2:
        raise UserError(f"pairs_from_policy: k must be >= 2 to form a pair, got {k}")
    ranks = Ranks(*shard)
    mine = ranks.share(list(range(len(samples))))
    texts, scores, finished = _sample_and_score(
        model, tokenizer, [samples[i] for i in mine], scorer, k, settings or GenerationSettings(),
        ranks.seed(seed), max_prompt_tokens, generator, progress and ranks.is_main,
    )  # fmt: skip
    if ranks.count > 1:  # every process gets every prompt's candidates, in the prompts' order
        rows = sorted(ranks.gather_objects(list(zip(mine, texts, scores, finished))), key=lambda r: r[0])
        texts, scores, finished = [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
    stats = PairStats(prompts=len(samples), min_spread=min_spread)
    stats.candidates = sum(len(t) for t in texts)
    stats.unfinished = sum(not f for fs in finished for f in fs)
    pairs: list[Comparison] = []
    for sample, resp, sc, fin in zip(samples, texts, scores, finished):
        if max(sc) - min(sc) < min_spread or max(sc) == min(sc):
            stats.skipped_small_spread += 1
            stats.skipped_ids.append(sample.id)
            continue
        pairs.append(best_vs_worst(sample, resp, sc, k, fin))
    stats.pairs = len(pairs)
    stats.mean_spread = _mean([p.meta["spread"] for p in pairs])
    stats.mean_chosen_score = _mean([p.scores["a"]["reward"] for p in pairs])
    stats.mean_rejected_score = _mean([p.scores["b"]["reward"] for p in pairs])
    stats.mean_chosen_chars = _mean([len(p.response_a) for p in pairs])
    stats.mean_rejected_chars = _mean([len(p.response_b) for p in pairs])
    return pairs, stats


def _sample_and_score(
    model, tokenizer, samples, scorer, k, settings, seed, max_prompt_tokens, generator, progress
) -> tuple[list[list[str]], list[list[float]], list[list[bool]]]:
    """(texts, scores, finished flags) of ``k`` candidates per sample."""
    if not samples:  # a rank with no share of fewer prompts than processes
        return [], [], []
    from chatglm_rlhf.data.templates import prompt_ids
    from chatglm_rlhf.models.generation import make_generator

    gen = generator or make_generator(model, tokenizer, settings, progress=progress)
    prompts = [prompt_ids(tokenizer, s, max_prompt_tokens)[0] for s in samples]
    generated = gen.generate(prompts, k, settings, seed=seed)
    texts = [[decode_response(tokenizer, g) for g in gs] for gs in generated]
    scores = score_candidates(scorer, samples, texts)
    return texts, scores, [[g.finished for g in gs] for gs in generated]
