"""PPO and DPO (pairs_from=rm) with generation.backend=vllm, end to end on a tiny Llama in fp32."""

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here: `make test` runs these in .venv-vllm")


import json

import torch
from vllm_fixtures import QUESTIONS, greedy, prompts, tiny_llama

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.generation import GenerationSettings, HFGenerator
from chatglm_rlhf.policy.dpo.config import DPOConfig
from chatglm_rlhf.policy.dpo.pairs import pairs_from_policy
from chatglm_rlhf.policy.dpo.trainer import DPOTrainer
from chatglm_rlhf.policy.online.config import PPOConfig
from chatglm_rlhf.policy.online.critic import build_models
from chatglm_rlhf.policy.online.loop import OnlineTrainer


class LetterScorer:
    """Rewards answers with many 'a's: a signal a tiny model can follow in a few steps."""

    def score(self, samples, responses):
        return [r.count("a") / 3 - 0.05 * len(r) / 10 for r in responses]


def samples():
    return [DialogueSample(id=f"q{i}", prompt=q) for i, q in enumerate(QUESTIONS)]


def test_ppo_on_vllm_syncs_every_step(tok, tmp_path):
    actor = tiny_llama(tok)
    ps = prompts(tok)
    before = greedy(HFGenerator(actor, tok), ps)
    gen = GenerationSettings(max_new_tokens=8, batch_size=8, backend="vllm")
    cfg = PPOConfig(
        output_dir=str(tmp_path), steps=3, rollout_batch_size=4, mini_batch_size=2, update_epochs=2,
        forward_batch_size=4, generation=gen, lr=3e-3, critic_lr=1e-3, prompt_filter=False, ptx_coef=0.0,
        progress=False, seed=3, log_every=1,
    )  # fmt: skip
    trainer = OnlineTrainer(cfg, build_models(actor, tok), LetterScorer(), samples())
    result = trainer.train()
    assert result["steps"] == 3
    after = greedy(HFGenerator(actor, tok), ps)
    assert after != before, "the updates did not change the greedy answers: the sync check proves nothing"
    assert greedy(trainer.generator, ps) == after  # the engine holds the trained weights
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    gaps = [r["health/engine_logprob_gap"] for r in rows]
    assert len(gaps) == 3
    # Synced engine, fp32, temperature 1: its log-probs are the trainer's up to rounding. A stale engine
    # (steps 2 and 3 sampled from step-1 weights) would show the size of the update instead.
    assert max(gaps) < 1e-3, gaps


def test_dpo_pairs_from_rm_on_vllm(tok, tmp_path):
    model = tiny_llama(tok, seed=1)
    settings = GenerationSettings(max_new_tokens=8, temperature=1.0, batch_size=16, backend="vllm")
    pairs, stats = pairs_from_policy(model, tok, samples(), LetterScorer(), k=4, settings=settings, seed=2)
    assert stats.candidates == 4 * len(QUESTIONS)
    assert stats.pairs + stats.skipped_small_spread == len(QUESTIONS) and stats.pairs >= 4
    for p in pairs:  # best vs worst by the scorer
        assert p.scores["a"]["reward"] > p.scores["b"]["reward"]
    cfg = DPOConfig(
        output_dir=str(tmp_path / "dpo"), max_length=64, batch_size=4, lr=1e-3, beta=0.1, warmup_ratio=0.0,
        lr_schedule="constant", progress=False, log_every=1, cpu=True, max_steps=3,
    )  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = DPOTrainer(cfg, model, tok).train(pairs)
    assert result["steps"] == 3
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_two_ranks_each_sync_their_engine(tmp_path):
    """torchrun with 2 CPU processes: each rank's engine (vLLM's external_launcher on the trainer's
    group) samples its share and follows the updates; the DDP replicas end equal."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
           "127.0.0.1", "--master_port", str(port), "--max_restarts", "0", str(here / "two_rank_worker.py"),
           str(tmp_path)]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in reports:
        assert r["world"] == 2 and r["changed"] and r["engine_equals_actor"], r
    assert reports[0]["after"] == reports[1]["after"]  # one model, trained in step on both ranks


@pytest.mark.parametrize("estimator", ["rloo", "remax"])
def test_pg_on_vllm_follows_the_updates(tmp_path, estimator):
    """A critic-free estimator (k samples per prompt from the engine; remax also the engine's greedy
    answer) syncs the engine each iteration and logs the engine's log-prob gap, as PPO does."""
    import copy

    from vllm_fixtures import TEXTS

    from chatglm_rlhf.models.tiny import train_tokenizer
    from chatglm_rlhf.policy.models import ActorWithReference
    from chatglm_rlhf.policy.online.config import PGConfig
    from chatglm_rlhf.policy.online.loop import OnlineTrainer

    tok = train_tokenizer(TEXTS, vocab_size=300)
    actor = tiny_llama(tok)
    ps = prompts(tok)
    before = greedy(HFGenerator(actor, tok), ps)
    cfg = PGConfig(
        output_dir=str(tmp_path), steps=3, rollout_batch_size=4, k=4, mini_batch_size=8, update_epochs=1,
        forward_batch_size=8, generation=GenerationSettings(max_new_tokens=8, batch_size=16, backend="vllm"),
        lr=3e-3, prompt_filter=False, ptx_coef=0.0, progress=False, seed=3, estimator=estimator,
    )  # fmt: skip
    models = ActorWithReference(actor, tok, reference=copy.deepcopy(actor))
    trainer = OnlineTrainer(cfg, models, LetterScorer(), samples())
    trainer.train()
    after = greedy(HFGenerator(actor, tok), ps)
    assert after != before
    assert greedy(trainer.generator, ps) == after
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    gaps = [r["health/engine_logprob_gap"] for r in rows]
    assert len(gaps) == 3 and max(gaps) < 1e-3, gaps  # a synced engine: the log-probs agree (as PPO's)
