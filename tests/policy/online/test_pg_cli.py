"""`chatglm-rlhf pg` end to end on tiny local checkpoints, its config errors, and the registry entry."""

import json

import pytest

from chatglm_rlhf.cli.main import main
from chatglm_rlhf.data.io import write_jsonl
from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.models.tiny import make_tiny_checkpoint

TEXTS = ["What is 2 plus 3?", "The answer is 5.", "List two fruits.", "Apple, pear."] * 10


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatglm_rlhf.reward.model import reward_model_from_causal, save_reward_model

    root = tmp_path_factory.mktemp("pg_cli")
    sft = make_tiny_checkpoint(
        root / "sft", TEXTS, vocab_size=300, hidden_size=32, num_heads=4, num_kv_heads=2
    )
    tok = AutoTokenizer.from_pretrained(sft)
    save_reward_model(reward_model_from_causal(AutoModelForCausalLM.from_pretrained(sft), tok), tok,
                      root / "rm", {"max_length": 64})  # fmt: skip
    write_jsonl(
        root / "prompts.jsonl", [DialogueSample(id=f"p{i}", prompt=f"What is {i} plus 2?") for i in range(4)]
    )
    write_jsonl(
        root / "sft.jsonl", [DialogueSample(id="s", prompt="List two fruits.", responses=["Apple, pear."])]
    )
    return root


def test_pg_cli_trains_and_saves(files, capsys):
    out = files / "out"
    rc = main([
        "pg", "estimator=rloo", f"model={files / 'sft'}", f"reward_model={files / 'rm'}",
        f"prompts={files / 'prompts.jsonl'}", f"sft_data={files / 'sft.jsonl'}", f"output_dir={out}", "steps=2",
        "rollout_batch_size=2", "k=2", "mini_batch_size=4", "generation.max_new_tokens=5", "filter_k=2",
        "filter_eps=0", "progress=false", "cpu=true",
    ])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "pg (rloo): 2 steps" in printed and "prompt filter: dropped 0 of 4" in printed
    result = json.loads((out / "pg_result.json").read_text())
    assert result["steps"] == 2 and len(result["reward_series"]) == 2
    assert json.loads((out / "pg_config.json").read_text())["estimator"] == "rloo"
    assert (out / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("arg", "key"),
    [("estimator=ppo", "estimator"), ("kl_mode=both", "kl_mode"), ("loss_agg=sum", "loss_agg"),
     ("no_such_key=1", "no_such_key"), ("k=two", "k")],
)  # fmt: skip
def test_pg_cli_errors_name_the_key(capsys, arg, key):
    assert main(["pg", arg]) == 2
    assert key in capsys.readouterr().err


def test_pg_cli_reports_missing_inputs(capsys):
    assert main(["pg", "steps=1"]) == 2
    assert "model=..." in capsys.readouterr().err


def test_pg_help_and_registry(capsys):
    from chatglm_rlhf.policy.online.config import PGConfig
    from chatglm_rlhf.policy.registry import ALGORITHMS, get

    assert get("pg").config_class() is PGConfig and "pg" in ALGORITHMS
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "pg" in capsys.readouterr().out.split()
    with pytest.raises(SystemExit):
        main(["pg", "--help"])
    text = capsys.readouterr().out
    for key in ("estimator", "kl_mode", "loss_agg", "ptx_coef", "prompt_filter", "grpo", "reinforce_pp"):
        assert key in text


@pytest.mark.parametrize("name", ["chatglm3-6b-pg.yaml", "glm-4-9b-chat-pg-lora.yaml"])
def test_real_pg_recipes_load(name):
    from pathlib import Path

    from chatglm_rlhf.config import load_config
    from chatglm_rlhf.policy.online.config import PGConfig

    path = Path(__file__).resolve().parents[3] / "recipes" / "real" / name
    cfg = load_config(PGConfig, path, section="pg")  # unknown keys / wrong types raise
    assert cfg.gradient_checkpointing and (cfg.lora_r > 0) == name.endswith("-lora.yaml")
    assert cfg.trust_remote_code == name.startswith("chatglm3")


def test_demo_critic_free_recipe_loads():
    from pathlib import Path

    from chatglm_rlhf.pipeline.run import load_pipeline_config

    path = Path(__file__).resolve().parents[3] / "recipes" / "demo_critic_free.yaml"
    cfg = load_pipeline_config(str(path), [])
    assert (
        cfg.ablations == ["critic_free"]
        and cfg.pg.rollout_batch_size * cfg.pg.k == cfg.ppo.rollout_batch_size
    )
