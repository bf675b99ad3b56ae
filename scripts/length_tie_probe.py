"""The RMs' length bias on natural gold ties: SFT samples to held-out prompts that gold scores alike.

usage: python scripts/length_tie_probe.py RUN_DIR [RUN_DIR ...]   (demo-world runs with rm and rm_nobalance)
For 400 held-out prompts of the run's world (the evaluation pool), the SFT model samples k = 4 answers
(the run's `generation` settings); every pair of different lengths that the gold judge calls a tie is a
probe pair (as the held-out preference pairs' ties, but enough of them: those number ~50 a run). Prints,
per RM, corr(reward difference, length difference) over the pairs and how often the longer one scores
higher, and writes RUN_DIR/length_tie_probe.json. The filler probe (reward stage) is the stricter
companion: the same good answer with and without polite filler.
"""

from __future__ import annotations

import json
import sys
from itertools import combinations
from pathlib import Path

N_PROMPTS, K = 400, 4


def tie_pairs(world, judge, sft, tok, generation, seed: int):
    from chatglm_rlhf.data.schema import Comparison
    from chatglm_rlhf.evaluate.evaluate import generate_responses

    prompts = world.prompts("eval", N_PROMPTS)
    answers = [generate_responses(sft, tok, prompts, generation, seed=seed + j)[0] for j in range(K)]
    pairs, seen = [], set()
    for i, s in enumerate(prompts):
        for a, b in combinations([answers[j][i] for j in range(K)], 2):
            key = (s.id, *sorted((a, b)))
            if len(a.split()) != len(b.split()) and key not in seen and judge.compare(s, a, b) == "tie":
                seen.add(key)
                pairs.append(
                    Comparison(s.id, s.prompt, a, b, "tie", history=list(s.history), category=s.category)
                )
    return pairs


def one(run: Path) -> dict:
    from chatglm_rlhf.models.generation import GenerationSettings
    from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer
    from chatglm_rlhf.reward.scorer import RewardScorer
    from chatglm_rlhf.reward.stages import length_tie_probe
    from chatglm_rlhf.tasks.demo.judge import GoldJudge
    from chatglm_rlhf.tasks.demo.world import DemoWorld

    cfg = json.loads((run / "config.json").read_text())
    gen = {k: v for k, v in cfg["generation"].items() if k != "vllm"} | {"backend": "hf"}
    sft_dir = str(run / "models" / "sft")
    sft, tok = load_causal_lm(sft_dir, dtype="fp32", device="cpu"), load_tokenizer(sft_dir)
    pairs = tie_pairs(
        DemoWorld((cfg.get("task") or cfg["world"])["seed"]),
        GoldJudge(),
        sft,
        tok,
        GenerationSettings(**gen),
        seed=17,
    )
    out = {"run": str(run), "prompts": N_PROMPTS, "k": K}
    for rm in ("rm", "rm_nobalance"):
        if (run / "models" / rm).exists():
            out[rm] = length_tie_probe(
                RewardScorer.from_pretrained(str(run / "models" / rm), device="cpu"), pairs
            )
    (run / "length_tie_probe.json").write_text(json.dumps(out, indent=1))
    return out


def main(dirs: list[str]) -> None:
    for d in dirs:
        o = one(Path(d))
        rows = [f"{rm}: corr {o[rm]['pearson']:+.3f}, longer scores higher {o[rm]['longer_wins']:.2f}"
                for rm in ("rm", "rm_nobalance") if rm in o]  # fmt: skip
        n = next((o[rm]["n"] for rm in ("rm", "rm_nobalance") if rm in o), 0)
        print(f"{o['run']}: {n} gold-tie pairs of different lengths; " + "; ".join(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
