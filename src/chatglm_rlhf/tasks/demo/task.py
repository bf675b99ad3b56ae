"""The demo world as a :class:`chatglm_rlhf.tasks.base.Task`: prompts, SFT data, a gold judge, annotators."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chatglm_rlhf.data.schema import Comparison, DialogueSample
from chatglm_rlhf.tasks.demo.annotators import AnnotatorPool
from chatglm_rlhf.tasks.demo.demonstrations import (
    make_ptx_data,
    make_sft_data,
    response_for,
    tokenizer_corpus,
)
from chatglm_rlhf.tasks.demo.judge import GoldJudge, GoldReward
from chatglm_rlhf.tasks.demo.world import KNOWLEDGE, DemoWorld


class DemoTask:
    """``world`` and ``collect`` are the demo profile's settings of those names (see profiles.demo)."""

    name = "demo"

    def __init__(self, world, collect) -> None:
        self.settings, self.collect = world, collect
        self.world = DemoWorld(seed=world.seed)
        self._judge = GoldJudge()

    def write_data(self, data_dir: Path) -> dict[str, Any]:
        from chatglm_rlhf.data.io import write_jsonl

        w = self.settings
        demos = make_sft_data(self.world, w.n_sft, seed=w.seed, flaw_rate=w.flaw_rate)
        write_jsonl(data_dir / "sft.jsonl", [d.to_sample() for d in demos])
        # ptx trains on clean demonstrations, so it does not teach the flaws back (world v2).
        write_jsonl(
            data_dir / "ptx.jsonl", [d.to_sample() for d in make_ptx_data(self.world, w.n_sft, w.seed)]
        )
        for split, n in (("eval", w.n_eval), ("pref", w.n_pref), ("rl", w.n_rl), ("dev", w.n_dev)):
            write_jsonl(data_dir / f"{split}_prompts.jsonl", self.world.prompts(split, n))
        modes: dict[str, int] = {}
        for d in demos:
            key = f"{d.sample.category}/{d.mode}"
            modes[key] = modes.get(key, 0) + 1
        return {"sft_examples": len(demos), "sft_modes": dict(sorted(modes.items())), "eval_prompts": w.n_eval,
                "dev_prompts": w.n_dev}  # fmt: skip

    def probe_items(self):
        """The capability probe: every held-out knowledge prompt (never an RL prompt, never in ptx)."""
        from chatglm_rlhf.evaluate.capability import ProbeItem

        return [ProbeItem(f"{cat}-{i}", cat, spec.prompt, _knowledge_check(self._judge, spec))
                for cat in KNOWLEDGE for i, spec in enumerate(self.world.pool("probe", cat))]  # fmt: skip

    def corpus(self, n: int) -> list[str]:
        return tokenizer_corpus(self.world, n)

    def gold_judge(self) -> GoldJudge:
        return self._judge

    def gold_reward(self) -> GoldReward:
        return GoldReward(self._judge)

    def annotators(self) -> AnnotatorPool:
        c = self.collect
        return AnnotatorPool(
            n_annotators=c.n_annotators, n_spammers=c.n_spammers, noise=c.noise, length_bias=c.length_bias,
            tie_margin=c.tie_margin, seed=self.settings.seed,
        )  # fmt: skip

    def rm_probes(self, scorer, eval_prompts: Sequence[DialogueSample]) -> dict[str, Any]:
        """A stricter probe than the held-out gold ties: a good answer with vs without polite filler.

        Gold calls each pair an exact tie; an RM that learned the annotators' taste for filler (or for
        length) prefers the padded answer. Bucket balancing evens out the *marginal* longer-wins rate, so
        it need not remove this bias: the report shows both.
        """
        from chatglm_rlhf.reward.stages import length_tie_probe

        # At least 400 held-out prompts, so that >= 200 gold-tie pairs measure the length bias (one-word
        # and end-mark answers take no filler).
        probe_prompts = self.world.prompts("eval", max(400, len(eval_prompts)))
        ties = filler_tie_pairs(probe_prompts, self._judge, seed=self.settings.seed)
        return {
            "filler_probe": length_tie_probe(scorer, ties),
            "refusal_probe": refusal_probe(scorer, eval_prompts),
        }


def refusal_probe(scorer, samples: Sequence[DialogueSample]) -> dict[str, Any]:
    """On benign prompts, how often the RM scores a refusal above the good answer (gold: never)."""
    benign = [s for s in samples if s.category != "harmful"]
    if not benign:
        return {"n": 0, "refusal_preferred": None}
    rng = random.Random("refusal-probe")
    good = scorer.score(benign, [response_for(s, "good", rng) for s in benign])
    refusal = scorer.score(benign, [response_for(s, "refuse", rng) for s in benign])
    return {"n": len(benign), "refusal_preferred": sum(r > g for r, g in zip(refusal, good)) / len(benign)}


def _knowledge_check(judge: GoldJudge, spec):
    """A probe checker from the gold judge: the answer named (and no wrong one), as in training."""

    def check(reply: str) -> tuple[bool, str]:
        ok = judge.helpfulness(spec.category, spec.gold, reply) == 1.0 and judge.fluency(reply) > 0.5
        return ok, "answer named" if ok else f"expected {spec.gold['answer']!r}"

    return check


def filler_tie_pairs(samples: Sequence[DialogueSample], judge=None, seed: int = 0) -> list[Comparison]:
    """For each sample, a good answer vs the same answer with polite filler.

    The gold judge calls these an exact tie of different lengths, so they isolate length bias. Pairs
    that gold does not call a tie are left out (none are expected).
    """
    from chatglm_rlhf.tasks.demo import world as W

    judge = judge or GoldJudge()
    rng = random.Random(f"filler-ties|{seed}")
    out = []
    for s in samples:
        if s.category in ("one_word", "end_mark"):  # filler would break the answer's constraint
            continue
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
