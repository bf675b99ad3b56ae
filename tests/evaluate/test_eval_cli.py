"""The ``evaluate`` and ``report`` subcommands, end to end on tiny local checkpoints."""

from __future__ import annotations

import argparse
import json

import pytest

from chatglm_rlhf.cli import evaluate_cmd, report_cmd
from chatglm_rlhf.models.tiny import make_tiny_checkpoint


def _cli(*argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    evaluate_cmd.register(sub)
    report_cmd.register(sub)
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_evaluate_cli_with_an_llm_judge(tmp_path):
    texts = [f"What is {a} plus {b}? It is {a + b}. Answer A or B." for a in range(8) for b in range(8)]
    kw = dict(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    pol = make_tiny_checkpoint(tmp_path / "pol", texts, seed=1, **kw)
    base = make_tiny_checkpoint(tmp_path / "base", texts, seed=2, **kw)
    prompts = tmp_path / "align.jsonl"
    rows = [{"question_id": i, "category": "math", "subcategory": "add", "question": f"What is {i} plus 1?",
             "reference": str(i + 1)} for i in range(3)]  # fmt: skip
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "eval"
    rc = _cli("evaluate", "--policy", str(pol), "--baseline", str(base), "--prompts", str(prompts),
              "--judge", "llm", "--judge-model", str(base), "--output-dir", str(out),
              "generation.max_new_tokens=4", "judge_max_new_tokens=2", "bootstrap=20", "device=cpu",
              "progress=false")  # fmt: skip
    assert rc == 0
    ev = json.loads((out / "eval.json").read_text())
    assert ev["n"] == 3 and ev["judge"]["judge"] == "llm" and ev["judge"]["pairs"] == 3
    assert set(ev["per_category"]) == {"math"}
    assert len((out / "responses.jsonl").read_text().splitlines()) == 3


def test_evaluate_cli_requires_models(tmp_path):
    from chatglm_rlhf.errors import UserError

    with pytest.raises(UserError, match="policy=... "):
        _cli("evaluate", "--prompts", str(tmp_path / "x.jsonl"), "baseline=b")


def test_report_cli(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text(
        json.dumps({"filter": {"read": 5, "kept": 4, "dropped": {"tie": 1}}})
    )
    assert _cli("report", str(tmp_path)) == 0
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
    assert "wrote" in capsys.readouterr().out


def test_report_cli_missing_or_bad_metrics(tmp_path):
    from chatglm_rlhf.errors import UserError

    with pytest.raises(UserError, match="no metrics file"):
        _cli("report", str(tmp_path))
    (tmp_path / "metrics.json").write_text("{bad")
    with pytest.raises(UserError, match="invalid JSON"):
        _cli("report", str(tmp_path))


def test_nested_generation_override_keeps_greedy():
    from chatglm_rlhf.config import load_config
    from chatglm_rlhf.evaluate.evaluate import EvaluateConfig

    gen = load_config(EvaluateConfig, overrides=["generation.max_new_tokens=4"]).generation
    assert gen.greedy is True and gen.max_new_tokens == 4


def test_a_judge_that_cannot_score_the_prompts_fails_before_any_answer_is_generated(tmp_path, capsys):
    from chatglm_rlhf.errors import UserError
    from chatglm_rlhf.evaluate import run as R

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "q", "prompt": "How do I bake bread?"}) + "\n")
    generated = []
    orig = R._answer
    R._answer = lambda *a, **k: generated.append(a) or orig(*a, **k)
    try:
        for judge, text in ((["--judge", "gold"], "judge=gold cannot score"), ([], "has no gold answers")):
            with pytest.raises(UserError, match=text):  # the default is auto: no gold, no judge_model
                _cli("evaluate", "--policy", str(tmp_path / "m"), "--baseline", str(tmp_path / "m"),
                     "--prompts", str(prompts), *judge)  # fmt: skip
    finally:
        R._answer = orig
    assert generated == []  # nothing was generated before the error


def test_judge_auto_picks_gold_for_demo_prompts_and_rm_or_llm_by_the_judge_model(tmp_path):
    from chatglm_rlhf.evaluate.evaluate import EvaluateConfig
    from chatglm_rlhf.evaluate.run import choose_judge
    from chatglm_rlhf.tasks.demo.world import DemoWorld

    demo = DemoWorld(seed=0).prompts("eval", 2)
    assert choose_judge(EvaluateConfig(), demo).judge == "gold"
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    from chatglm_rlhf.data.schema import DialogueSample

    plain = [DialogueSample(id="q", prompt="How do I bake bread?")]
    assert choose_judge(EvaluateConfig(judge_model=str(rm)), plain).judge == "rm"
    (rm / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert choose_judge(EvaluateConfig(judge_model=str(rm)), plain).judge == "llm"
