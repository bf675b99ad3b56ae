"""The real profile's stages on a tiny local chat model and a tiny HH-style file (CI has neither SmolLM2
nor ../shared): the wiring, the split, the report and resuming. The real run is in test_real_slow.py."""

from __future__ import annotations

import json
import random

import pytest
from real_fixtures import TINY, load_real_config, real_ctx, tiny_chat_model, write_hh_file

from chatglm_rlhf.cli.main import main
from chatglm_rlhf.pipeline.stages import data, models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    return tiny_chat_model(base / "model"), write_hh_file(base / "hh.jsonl")


def _parts(out):
    return {name: (out / "data" / f"{name}.jsonl").read_text().splitlines()
            for name in ("rm_train", "rm_eval", "judge_train", "heldout")}  # fmt: skip


def test_data_split_is_deterministic_order_free_and_leak_free(tiny, tmp_path):
    _, hh = tiny
    shuffled = tmp_path / "shuffled.jsonl"
    lines = hh.read_text().splitlines()
    random.Random(1).shuffle(lines)
    shuffled.write_text("\n".join(lines) + "\n")
    results = []
    for i, path in enumerate((hh, hh, shuffled)):
        cfg = load_real_config(None, [f"task.path={path}", "task.n_eval=0", "task.n_rl=0"])
        run = real_ctx(cfg, tmp_path / f"run{i}")
        results.append((data.data(run), _parts(run.out), run))
    (m0, p0, run0), (m1, p1, _), (_, p2, _) = results
    assert m0 == m1 and p0 == p1  # same seed, same file: the same parts, line for line
    assert {k: sorted(v) for k, v in p0.items()} == {k: sorted(v) for k, v in p2.items()}  # input order
    assert sum(m0["parts"].values()) == m0["comparisons"] == 48 and all(m0["parts"].values())
    assert m0["eval_contexts_seen_in_training"] == 0
    from chatglm_rlhf.data.splits import context_key

    train_ctx = {context_key(c) for k in ("rm_train", "rm_eval", "judge_train") for c in run0.comparisons(k)}
    eval_ctx = {context_key(s) for s in run0.samples("eval_prompts")}
    assert eval_ctx and not eval_ctx & train_ctx
    rl_ctx = {context_key(s) for s in run0.samples("rl_prompts")}
    assert rl_ctx <= {context_key(c) for c in run0.comparisons("rm_train")}
    # ptx data = rm_train's chosen responses
    sft = [json.loads(x) for x in (run0.data / "sft.jsonl").read_text().splitlines()]
    assert {s["responses"][0] for s in sft} <= {c.chosen for c in run0.comparisons("rm_train")}
    other = load_real_config(None, [f"task.path={hh}", "task.seed=5"])
    run5 = real_ctx(other, tmp_path / "seed5")
    data.data(run5)
    assert _parts(run5.out) != p0  # the seed matters


def test_real_profile_end_to_end_on_a_tiny_model_then_resumes(tiny, tmp_path, capsys):
    model, hh = tiny
    out = tmp_path / "run"
    args = ["demo", "--profile", "real", "--out", str(out), f"model={model}", f"task.path={hh}",
            "ablations=[ptx]", *TINY, "ppo.steps=2", "ppo.snapshot_every=1", "eval.llm_judge=true"]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    for stage in (
        "checkpoint",
        "data",
        "filter",
        "rm",
        "judge_rm",
        "judge_rm_2",
        "ppo",
        "ppo_curve",
        "ppo_noptx",
        "dpo",
        "evaluate",
        "probe",
    ):
        assert stage in m["timing"], stage
    for name in ("rm", "judge_rm", "ppo", "ppo_noptx", "dpo"):
        assert (out / "models" / name / "config.json").exists(), name
    ev = m["evaluate"]
    n = ev["n_prompts"]
    assert (
        n == m["data"]["eval_prompts"] == len((out / "data" / "eval_prompts.jsonl").read_text().splitlines())
    )
    assert n >= 3
    for policy in ("ppo", "ppo_noptx", "dpo"):
        for judge in ("judge_rm", "proxy_rm"):
            j = ev[policy][judge]
            assert j["win"] + j["tie"] + j["loss"] == n and 0.0 <= j["win_rate"] <= 1.0
    for policy in ("ppo", "dpo"):  # the two judges' majority and their agreement on the policy's pairs
        e = ev[policy]["judges"]
        assert e["judges"] == ["judge_rm", "judge_rm_2"] and e["win"] + e["tie"] + e["loss"] == n
        assert 0.0 <= e["pairwise_agreement"]["judge_rm|judge_rm_2"] <= 1.0
        assert "unfinished_rate" in ev[policy]["lengths"]
    curve = m["ppo_curve"]  # a snapshot at step 1, the final policy at step 2; kept on the dev prompts
    assert [p["step"] for p in curve["points"]] == [1, 2] and curve["kept_step"] in (1, 2)
    assert {"proxy_rm", "judge_rm", "judge_rm_2", "judges_mean"} <= set(curve["points"][0])
    kept = json.loads((out / "models" / "ppo" / "kept.json").read_text())
    assert (
        kept["step"] == curve["kept_step"]
        and (out / "models" / "ppo" / kept["path"] / "config.json").exists()
    )
    assert m["judge_rm"]["judge_train_share"] == [1, 2] and m["judge_rm_2"]["judge_train_share"] == [2, 2]
    llm = ev["ppo"]["llm"]
    assert llm["n"] == 3 and llm["pairs"] == 3 and 0.0 <= llm["agreement_rate"] <= 1.0
    assert "llm" not in ev["dpo"]  # only eval.llm_judge_policies (ppo by default)
    assert len(ev["examples"]) == 2 and {"sft", "ppo", "judge_rm_sft", "judge_rm_ppo"} <= set(
        ev["examples"][0]
    )
    for name in ("sft", "ppo", "ppo_noptx", "dpo"):  # the v2 bank: 216 items, 40 of them benign requests
        assert m["probe"][name]["total"] == 216 and 0.0 <= m["probe"][name]["refusal_hedge_rate"] <= 1.0
        assert set(m["probe"][name]["by_split"]) == {"dev", "test"}
    assert m["ppo"]["sft_heldout_loss_before"] > 0 and m["ppo"]["prompt_filter"]["kept"] > 0
    from chatglm_rlhf.evaluate.report.ablations import ablation_rows
    from chatglm_rlhf.evaluate.report.context import ReportContext

    rows = ablation_rows(ReportContext(out, m, {}))
    assert {r["setting"] for r in rows if r["name"] == "ptx loss"} == {"on", "off"}
    assert m["rm"]["heldout"]["n"] > 0 and m["judge_rm"]["agreement_with_proxy_rm_eval"] is not None
    html = (out / "report.html").read_text()
    for title in (
        "three judges",
        "Over-optimisation along PPO",
        "judge RM 2",
        "Capability probe",
        "Held-out prompts: SFT vs PPO",
        "Time per stage",
        "Reward models",
    ):
        assert title in html, title
    assert "could not render" not in html
    capsys.readouterr()
    assert main(args) == 0  # everything done: every stage is skipped
    assert "[ppo] already done" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0 and "three judges" in (out / "report.html").read_text()


def test_checkpoint_stage_converts_a_gguf_file(tmp_path):
    pytest.importorskip("gguf", reason="the 'gguf' package writes and reads GGUF files")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from chatglm_rlhf.models.gguf import write_llama_gguf
    from chatglm_rlhf.models.tiny import train_tokenizer

    tok = train_tokenizer([f"say {i} and {i + 1}" for i in range(60)], vocab_size=300)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    path = write_llama_gguf(LlamaForCausalLM(cfg), tok, tmp_path / "tiny.gguf")
    cfg = load_real_config(None, [f"gguf={path}"])
    run = real_ctx(cfg, tmp_path / "run")
    m = models.checkpoint(run, cfg.model, cfg.gguf)
    assert m["architecture"] == "LlamaForCausalLM" and m["parameters"] > 0
    assert run.sft_path == tmp_path / "run" / "models" / "base"
    assert (run.sft_path / "config.json").exists()


def test_checkpoint_stage_rejects_a_folder_that_is_no_checkpoint(tmp_path):
    from chatglm_rlhf.errors import UserError

    cfg = load_real_config(None, [f"model={tmp_path}"])
    run = real_ctx(cfg, tmp_path / "run")
    with pytest.raises(UserError, match="no config.json"):
        models.checkpoint(run, cfg.model, cfg.gguf)
