"""A feedback round's batch: the candidate pairs worth a label under a budget, for the annotation app.

Shared by the pipeline's feedback rounds (pipeline/stages/rounds.py) and ``chatglm-rlhf annotate
batch`` (a team building a batch by hand), so both choose alike: every answer is scored by each
reward model of an ensemble, each pair's uncertainty comes from the members' preferences
(reward/ensemble.py), and collect/select.py picks the pairs. A batch is our candidates JSONL with only
the samples that have a chosen pair, each saying its pairs (``meta.pairs``), its feedback round
(``meta.round``) and who wrote each answer (``meta.models``): what ``annotate load`` reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from chatglm_rlhf.collect.select import Pair, candidate_pairs, select_pairs
from chatglm_rlhf.data.schema import DialogueSample


def answer_offsets(cands: Sequence[DialogueSample]) -> list[int]:
    """Where each sample's answers start in the flat list of every answer (candidate order)."""
    out, n = [], 0
    for s in cands:
        out.append(n)
        n += len(s.responses)
    return out


def answer_scores(scorers: Iterable[Any], cands: Sequence[DialogueSample]):
    """``[members, answers]`` scores of every candidate answer, flat in candidate order. ``scorers`` may
    be a generator: one reward model is loaded at a time and freed before the next."""
    import torch

    flat = [(s, resp) for s in cands for resp in s.responses]
    rows = [scorer.score([s for s, _ in flat], [r for _, r in flat]) for scorer in scorers]
    return torch.tensor(rows, dtype=torch.float32)


def pair_uncertainty(
    cands: Sequence[DialogueSample], pairs: Sequence[Pair], scores, kind: str
) -> list[float]:
    """Each pair's uncertainty (``kind``: entropy | disagreement | bald) from the members' answer scores
    (``scores``: :func:`answer_scores`)."""
    from chatglm_rlhf.reward.ensemble import member_preferences, uncertainty

    off = answer_offsets(cands)
    ia = [off[si] + i for si, i, _ in pairs]
    ib = [off[si] + j for si, _, j in pairs]
    return uncertainty(member_preferences(scores[:, ia], scores[:, ib]), kind).tolist()


@dataclasses.dataclass
class Selection:
    pairs: list[Pair]  # every candidate pair
    chosen: list[Pair]  # the ones to annotate, in candidate order
    scores: list[float] | None  # each candidate pair's uncertainty (select=uncertainty), else None

    def chosen_scores(self) -> list[float]:
        picked = set(self.chosen)
        return [u for p, u in zip(self.pairs, self.scores or []) if p in picked]


def choose(cands: Sequence[DialogueSample], n_pairs: int, select: str, scorers: Iterable[Any] = (),
           kind: str = "disagreement", seed: int = 0, per_sample: int = 0) -> Selection:  # fmt: skip
    """Up to ``n_pairs`` pairs of ``cands`` by ``select`` (random | uncertainty, the ensemble being
    ``scorers``: reward models with ``score(samples, responses)``)."""
    pairs = candidate_pairs(cands)
    scores = None
    if select == "uncertainty":
        scores = pair_uncertainty(cands, pairs, answer_scores(scorers, cands), kind)
    chosen = select_pairs(pairs, n_pairs, select, scores=scores, seed=seed, per_sample=per_sample)
    return Selection(pairs, chosen, scores)


def batch_records(cands: Sequence[DialogueSample], selection: Selection, round_: int | None = None,
                  model: str = "") -> list[DialogueSample]:  # fmt: skip
    """The batch: each sample with a chosen pair, its meta saying ``pairs``, ``round`` (``round_``, else
    its own meta's, else 1), ``models`` (``model`` for every answer when given, else its own meta's) and,
    with select=uncertainty, each pair's ``uncertainty``."""
    by_sample: dict[int, list[Pair]] = {}
    for p in selection.chosen:
        by_sample.setdefault(p[0], []).append(p)
    score_of = dict(zip(selection.pairs, selection.scores or []))
    out = []
    for si, chosen in sorted(by_sample.items()):
        s = cands[si]
        meta = {**s.meta, "round": round_ or s.meta.get("round", 1), "pairs": [[i, j] for _, i, j in chosen]}
        if model:
            meta["models"] = [model] * len(s.responses)
        if selection.scores is not None:
            meta["uncertainty"] = [round(score_of[p], 6) for p in chosen]
        out.append(dataclasses.replace(s, meta=meta))
    return out


def batch_pairs(records: Iterable[DialogueSample]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(sample id, answer i, answer j) of every pair in a batch -> its round and answer models: how a
    comparison exported from the app is matched back to the batch it came from."""
    out = {}
    for s in records:
        models = s.meta.get("models") or []
        for i, j in s.meta.get("pairs", []):
            who = {"model_a": models[i], "model_b": models[j]} if len(models) == len(s.responses) else {}
            out[(s.id, s.responses[i], s.responses[j])] = {"round": s.meta.get("round", 1), **who}
    return out
