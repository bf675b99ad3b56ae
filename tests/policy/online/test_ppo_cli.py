"""`chatglm-rlhf ppo` end to end on tiny local checkpoints (SFT model + a reward model)."""

import json

import pytest

from chatglm_rlhf.cli.main import main
from chatglm_rlhf.data.io import write_jsonl
from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.tiny import make_tiny_checkpoint
from chatglm_rlhf.policy.online.critic import critic_source

TEXTS = ["What is 2 plus 3?", "The answer is 5.", "List two fruits.", "Apple, pear."] * 10
TINY = dict(hidden_size=32, num_heads=4, num_kv_heads=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatglm_rlhf.reward.model import reward_model_from_causal, save_reward_model

    root = tmp_path_factory.mktemp("ppo_cli")
    sft = make_tiny_checkpoint(root / "sft", TEXTS, vocab_size=300, **TINY)
    tok = AutoTokenizer.from_pretrained(sft)
    rm = reward_model_from_causal(AutoModelForCausalLM.from_pretrained(sft), tok)
    save_reward_model(rm, tok, root / "rm", {"max_length": 64})
    prompts = [DialogueSample(id=f"p{i}", prompt=f"What is {i} plus 2?") for i in range(4)]
    write_jsonl(root / "prompts.jsonl", prompts)
    demos = [
        DialogueSample(id=f"s{i}", prompt="List two fruits.", responses=["Apple, pear."]) for i in range(3)
    ]
    write_jsonl(root / "sft.jsonl", demos)
    return root


def test_ppo_cli_trains_and_saves(files, capsys, monkeypatch):
    from chatglm_rlhf import config

    monkeypatch.setattr(config, "_NOTICED", set())  # the notice is once per process: as a fresh one
    out = files / "out"
    rc = main([
        "ppo", f"model={files / 'sft'}", f"reward_model={files / 'rm'}", f"prompts={files / 'prompts.jsonl'}",
        f"sft_data={files / 'sft.jsonl'}", f"output_dir={out}", "steps=2", "rollout_batch_size=2",
        "mini_batch_size=2", "ppo_epochs=1", "generation.max_new_tokens=5", "filter_k=2", "filter_eps=0",
        "progress=false", "cpu=true", "save_every=1",
    ])  # fmt: skip
    assert rc == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "note: ppo_epochs is deprecated, an old name of update_epochs" in captured.err  # the old key works
    assert "ppo (gae): 2 steps" in printed and "prompt filter: dropped 0 of 4" in printed
    result = json.loads((out / "ppo_result.json").read_text())
    assert result["steps"] == 2 and len(result["reward_series"]) == 2
    assert (out / "model.safetensors").exists() and (out / "checkpoints" / "step-1").exists()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_ppo_cli_reports_missing_inputs(capsys):
    assert main(["ppo", "steps=1"]) == 2
    assert "model=..." in capsys.readouterr().err


def test_ppo_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        main(["ppo", "--help"])
    text = capsys.readouterr().out
    for key in ("reward_baseline", "kl_estimator", "ptx_coef", "shared_backbone", "prompt_filter", "resume"):
        assert key in text


def test_critic_source():
    assert critic_source("auto", "sft", "rm") == "rm"
    assert critic_source("auto", "sft", "") == "sft"
    assert critic_source("sft", "sft", "rm") == "sft"
    assert critic_source("/x/y", "sft", "rm") == "/x/y"
