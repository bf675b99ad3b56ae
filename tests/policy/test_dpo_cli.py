import json

import pytest
import torch

from chatglm_rlhf.cli.main import main
from chatglm_rlhf.data.io import write_jsonl
from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.tiny import make_tiny_checkpoint
from chatglm_rlhf.policy.dpo.config import DPOConfig
from chatglm_rlhf.policy.dpo.stage import run_dpo_stage

SUMS = [(a, b) for a in range(1, 4) for b in range(1, 3)]
TINY = dict(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    texts = [f"What is {a} + {b}? The answer is {a + b}. I think it is, maybe" for a, b in SUMS] * 4
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), texts, vocab_size=300, **TINY)


def _trl_file(path):
    rows = [
        {
            "prompt": f"What is {a} + {b}?",
            "chosen": f"The answer is {a + b}.",
            "rejected": f"It is {a + b + 2}.",
        }
        for a, b in SUMS
    ]
    rows.append({"prompt": "broken"})  # rejected with file:line in the report, not silently
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_dpo_from_a_trl_file(ckpt, tmp_path, capsys):
    data = _trl_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "dpo"
    rc = main(
        ["dpo", f"model={ckpt}", f"data={data}", f"eval_data={data}", f"output_dir={out}", "max_steps=3",
         "batch_size=2", "lr=1e-3", "max_length=64", "progress=false", "log_every=1", "cpu=true"]
    )  # fmt: skip
    assert rc == 0
    captured = capsys.readouterr()
    assert "pairs.jsonl:7" in captured.err  # the bad line is reported
    assert "dpo: 3 steps on 6 pairs" in captured.out
    result = json.loads((out / "dpo_result.json").read_text())
    assert 0.0 <= result["eval/rewards/accuracy"] <= 1.0
    assert (out / "model.safetensors").exists() and (out / "ref_logps_train.json").exists()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_cli_rejects_unknown_loss(ckpt, tmp_path, capsys):
    assert main(["dpo", f"model={ckpt}", "loss_type=hinge"]) == 2
    assert "loss_type must be one of" in capsys.readouterr().err


def test_cli_dpo_pairs_from_rm(ckpt, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatglm_rlhf.reward.model import reward_model_from_causal, save_reward_model

    tok = AutoTokenizer.from_pretrained(ckpt)
    rm = reward_model_from_causal(AutoModelForCausalLM.from_pretrained(ckpt), tok)
    torch.nn.init.normal_(rm.score.weight, std=1.0)  # a random but non-constant reward
    save_reward_model(rm, tok, tmp_path / "rm", {"max_length": 64})
    prompts = [DialogueSample(f"p{i}", f"What is {a} + {b}?") for i, (a, b) in enumerate(SUMS)]
    write_jsonl(tmp_path / "prompts.jsonl", prompts)
    out = tmp_path / "dpo"
    rc = main(
        ["dpo", f"model={ckpt}", "pairs_from=rm", f"prompts={tmp_path / 'prompts.jsonl'}",
         f"reward_model={tmp_path / 'rm'}", f"output_dir={out}", "k=3", "generation.max_new_tokens=8",
         "max_steps=2", "batch_size=2", "max_length=64", "progress=false", "cpu=true"]
    )  # fmt: skip
    assert rc == 0
    stats = json.loads((out / "pair_stats.json").read_text())
    assert stats["prompts"] == len(SUMS) and stats["candidates"] == 3 * len(SUMS)
    n_pairs = len((out / "pairs.jsonl").read_text().splitlines())
    assert n_pairs == stats["pairs"] == json.loads((out / "dpo_result.json").read_text())["pairs"]


def test_run_dpo_stage_with_a_fake_scorer(ckpt, tmp_path):
    class LengthScorer:  # longer is better: DPO should lengthen the chosen side's likelihood
        def score(self, samples, responses):
            return [float(len(r)) for r in responses]

    prompts = [DialogueSample(f"p{i}", f"What is {a} + {b}?") for i, (a, b) in enumerate(SUMS)]
    cfg = DPOConfig(k=4, max_steps=2, batch_size=3, max_length=64, progress=False, cpu=True, lr=1e-3)
    cfg.generation.max_new_tokens = 8
    result = run_dpo_stage(ckpt, tmp_path / "stage", prompts, LengthScorer(), cfg)
    assert result["steps"] == 2 and result["model_dir"] == str(tmp_path / "stage")
    assert result["pair_stats"]["pairs"] == result["pairs"] > 0
    assert result["pair_stats"]["mean_chosen_chars"] > result["pair_stats"]["mean_rejected_chars"]
    assert (tmp_path / "stage" / "model.safetensors").exists()
