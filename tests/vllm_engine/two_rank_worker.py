"""One rank of the 2-process vLLM test (launched by torch.distributed.run): PPO with backend=vllm, an
engine on each rank joined to the trainer's gloo group; writes what the test checks to OUT/rank{r}.json."""

import json
import sys
from pathlib import Path

import torch
from vllm_fixtures import QUESTIONS, TEXTS, greedy, prompts, tiny_llama

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.generation import GenerationSettings, HFGenerator
from chatglm_rlhf.models.tiny import train_tokenizer
from chatglm_rlhf.policy.online.config import PPOConfig
from chatglm_rlhf.policy.online.critic import build_models
from chatglm_rlhf.policy.online.loop import OnlineTrainer


class LetterScorer:
    def score(self, samples, responses):
        return [r.count("a") / 3 - 0.05 * len(r) / 10 for r in responses]


def main(out: Path) -> None:
    torch.set_num_threads(1)
    tok = train_tokenizer(TEXTS, vocab_size=300)
    actor = tiny_llama(tok)
    ps = prompts(tok)
    before = greedy(HFGenerator(actor, tok), ps)
    gen = GenerationSettings(max_new_tokens=8, batch_size=8, backend="vllm")
    cfg = PPOConfig(
        output_dir=str(out / "ppo"), steps=2, rollout_batch_size=4, mini_batch_size=2, update_epochs=1,
        forward_batch_size=4, generation=gen, lr=3e-3, critic_lr=1e-3, prompt_filter=False, ptx_coef=0.0,
        progress=False, seed=3, log_every=1, cpu=True,
    )  # fmt: skip
    samples = [DialogueSample(id=f"q{i}", prompt=q) for i, q in enumerate(QUESTIONS)]
    trainer = OnlineTrainer(cfg, build_models(actor, tok), LetterScorer(), samples)
    trainer.train()
    rank = torch.distributed.get_rank()
    after = greedy(HFGenerator(actor, tok), ps)
    report = {
        "world": torch.distributed.get_world_size(),
        "changed": after != before,
        "engine_equals_actor": greedy(trainer.generator, ps) == after,
        "after": after,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
