"""The embedded demo end to end on a very small profile, and its resumability."""

import json

from chatglm_rlhf.cli.main import main

TINY = [
    "world.n_sft=120",
    "world.n_eval=8",
    "world.n_pref=8",
    "world.n_rl=8",
    "world.corpus=400",
    "model.hidden_size=32",
    "model.num_layers=1",
    "sft.steps=4",
    "sft.batch_size=8",
    "generation.max_new_tokens=8",
    "progress=false",
]


def test_demo_writes_metrics_and_comparisons_then_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), "--profile", "smoke", *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["sft"]["gold_score"] <= 1.0
    # 8 prompts x 3 responses -> 3 pairs each, 2 annotators per pair in the smoke profile
    assert metrics["data"]["comparisons"] == 8 * 3 * 2
    lines = (out / "data" / "comparisons.jsonl").read_text().splitlines()
    assert len(lines) == metrics["data"]["comparisons"]
    trl = (out / "data" / "comparisons.trl.jsonl").read_text().splitlines()
    assert (
        len(trl)
        == metrics["data"]["trl_written"]
        == metrics["data"]["comparisons"] - metrics["data"]["labels"]["tie"]
    )
    assert (out / "models" / "sft" / "config.json").exists()
    capsys.readouterr()
    # A second run skips every finished stage and gives the same metrics.
    assert main(["demo", "--out", str(out), "--profile", "smoke", *TINY]) == 0
    assert "already done" in capsys.readouterr().out
    again = json.loads((out / "metrics.json").read_text())
    assert again["data"] == metrics["data"] and again["sft"] == metrics["sft"]
