"""A new policy algorithm plugs in with one registration and runs as a pipeline stage."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from test_demo_smoke import TINY

from chatglm_rlhf.cli.main import main
from chatglm_rlhf.policy import registry


# --- the toy algorithm (test-only): best-of-2 self-distillation, one SFT step on the RM's picks ------
@dataclass
class ToyConfig:
    k: int = 2
    max_new_tokens: int = 8


def train_toy(inputs: registry.PolicyInputs, cfg: ToyConfig) -> dict:
    import torch

    from chatglm_rlhf.collect.generate import generate_candidates
    from chatglm_rlhf.models.generation import GenerationSettings
    from chatglm_rlhf.models.loading import load_causal_lm, load_tokenizer
    from chatglm_rlhf.policy.sft import encode_examples, make_batches

    model, tok = load_causal_lm(inputs.sft_path, dtype="fp32", device="cpu"), load_tokenizer(inputs.sft_path)
    cands = generate_candidates(
        model, tok, inputs.prompts, cfg.k, GenerationSettings(max_new_tokens=cfg.max_new_tokens)
    )
    scores = [inputs.scorer.score([s] * len(s.responses), s.responses) for s in cands]
    best = [(s, s.responses[max(range(len(sc)), key=sc.__getitem__)]) for s, sc in zip(cands, scores)]
    batch = make_batches(
        encode_examples(tok, best, 128, truncate_response=True), len(best), tok.pad_token_id
    )[0]
    model.train()
    loss = model(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}).loss
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=1e-3).step()
    model.save_pretrained(inputs.output_dir)
    tok.save_pretrained(inputs.output_dir)
    return {"mean_best_reward": sum(max(sc) for sc in scores) / len(scores), "loss": loss.item(),
            "max_new_tokens": cfg.max_new_tokens}  # fmt: skip


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(registry.ALGORITHMS, "toy", registry.Algorithm(
        "toy", f"{__name__}:ToyConfig", f"{__name__}:train_toy", help="best-of-2 self-distillation"))  # fmt: skip


def test_a_registered_algorithm_runs_as_a_pipeline_stage(toy_registered, tmp_path):
    out = tmp_path / "run"
    args = [
        "demo",
        "--out",
        str(out),
        "--profile",
        "smoke",
        *TINY,
        "algorithms=[toy]",
        "ablations=[]",
        "ceiling_n=0",
        "toy.max_new_tokens=6",  # its own section, set on the command line like ppo's
    ]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert "toy" in m["timing"] and "ppo" not in m["timing"] and "dpo" not in m["timing"]
    assert isinstance(m["toy"]["mean_best_reward"], float) and m["toy"]["loss"] > 0
    assert m["toy"]["max_new_tokens"] == 6
    assert json.loads((out / "config.json").read_text())["toy"] == {"k": 2, "max_new_tokens": 6}
    assert (out / "models" / "toy" / "config.json").exists()
    assert sum(m["evaluate"]["toy"]["win_tie_loss"]) == 8  # evaluated against SFT like PPO and DPO
    assert m["run"]["algorithms"] == ["toy"] and m["run"]["policies"] == ["toy"]
    html = (out / "report.html").read_text()
    assert "TOY vs SFT win rate" in html  # the headline card
    assert '<tr><td class="">TOY</td><td class="">overall</td>' in html  # the win / tie / loss table
    assert "PPO vs SFT" not in html and "DPO vs SFT" not in html


def test_a_plugin_section_is_in_every_profile_and_in_recipes(toy_registered, tmp_path):
    from chatglm_rlhf.errors import ConfigError
    from chatglm_rlhf.pipeline.run import default_config, load_pipeline_config

    for profile in ("smoke", "default", "real-smoke", "files"):
        assert default_config(profile).toy.k == 2, profile
    recipe = tmp_path / "r.yaml"
    recipe.write_text("profile: smoke\nalgorithms: [toy]\ntoy: {k: 3}\n")
    assert load_pipeline_config(str(recipe), []).toy.k == 3
    with pytest.raises(ConfigError, match="toy.nope"):
        load_pipeline_config(None, ["toy.nope=1"], profile="smoke")


@pytest.mark.parametrize(
    "key", ["ppo.output_dir=/x", "ppo.model=m", "pg.prompts=p.jsonl", "dpo.reward_model=r"]
)
def test_keys_the_pipeline_fills_in_are_an_error_naming_the_key(key, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "r"), "--profile", "smoke", key]) == 2
    err = capsys.readouterr().err
    assert key.split("=")[0] in err and "filled in by the pipeline" in err and "Traceback" not in err


def test_pipeline_help_does_not_offer_the_filled_keys(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert "ppo.lr =" in text and "ppo.estimator =" in text
    for key in ("ppo.model =", "ppo.output_dir =", "pg.reward_model =", "dpo.prompts ="):
        assert key not in text, key


def test_an_unknown_algorithm_is_a_one_line_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "r"), "--profile", "smoke", "algorithms=[grpo_typo]"]) == 2
    err = capsys.readouterr().err
    assert "algorithms" in err and "ppo" in err and "Traceback" not in err


def test_help_lists_the_chosen_profiles_keys_grouped_by_section(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["demo", "--profile", "files", "--help"])
    files = capsys.readouterr().out
    assert "settings of --profile files" in files and "  device = 'auto'" in files
    assert "settings of --profile default" not in files and "world." not in files  # one profile only
    assert files.index("  model = ") < files.index("[ppo]") < files.index("  ppo.lr =")  # run keys first
    assert not [x for x in files.splitlines() if ".cpu = True" in x]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("profile: smoke\n")
    with pytest.raises(SystemExit):  # pipeline --help: the recipe's profile's keys
        main(["pipeline", "--config", str(recipe), "--help"])
    assert "settings of --profile smoke" in capsys.readouterr().out
