"""``chatglm-rlhf rm train | eval | score`` end to end on a tiny model."""

import json

import pytest
import torch

from chatglm_rlhf.cli.main import main
from chatglm_rlhf.data.io import write_jsonl
from chatglm_rlhf.data.schema import Comparison, DialogueSample
from chatglm_rlhf.models.tiny import make_tiny_checkpoint


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread avoids OpenMP spin-waits on a busy machine
    yield
    torch.set_num_threads(n)


def pairs(n):
    return [Comparison(f"s{i}", f"Say yes {i}.", "yes", "no thanks", "a" if i % 2 else "b") for i in range(n)]


def test_rm_train_eval_score(tmp_path, capsys):
    data = pairs(16)
    for c in data:  # label "b" pairs: put the chosen answer on side b
        if c.label == "b":
            c.response_a, c.response_b = c.response_b, c.response_a
    write_jsonl(tmp_path / "train.jsonl", data)
    texts = [c.prompt + " yes no thanks" for c in data]
    base = make_tiny_checkpoint(tmp_path / "base", texts, vocab_size=300, hidden_size=32)
    rm = tmp_path / "rm"
    args = ["rm", "train", f"model={base}", f"data={tmp_path / 'train.jsonl'}", f"output_dir={rm}"]
    args += [f"eval_data={tmp_path / 'train.jsonl'}", "max_steps=8", "lr=3e-3", "batch_size=8"]
    args += ["max_length=32", "progress=false", "reg_coef=0.01"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "model saved to" in out and "accuracy" in out
    assert main(["rm", "eval", f"model={rm}", f"data={tmp_path / 'train.jsonl'}"]) == 0
    report = json.loads((rm / "eval_report.json").read_text())
    assert report["n"] == 16 and report["accuracy"] == 1.0
    samples = [DialogueSample("x", "Say yes 3.", responses=["yes", "no thanks"])]
    write_jsonl(tmp_path / "samples.jsonl", samples)
    out_path = tmp_path / "scored.jsonl"
    assert (
        main(["rm", "score", f"model={rm}", f"data={tmp_path / 'samples.jsonl'}", f"output={out_path}"]) == 0
    )
    rewards = json.loads(out_path.read_text())["meta"]["rewards"]
    assert len(rewards) == 2 and rewards[0] > rewards[1]
    assert main(["rm", "score", f"model={rm}", f"data={tmp_path / 'train.jsonl'}", f"output={out_path}"]) == 0
    first = json.loads(out_path.read_text().splitlines()[0])
    assert {"reward_a", "reward_b"} <= set(first["meta"])


def test_rm_errors_are_user_errors(tmp_path, capsys):
    assert main(["rm", "train", "data=x.jsonl"]) == 2
    assert "model=" in capsys.readouterr().err
    assert main(["rm", "eval", "model=", "data="]) == 2
    assert main(["rm", "train", "unknown_key=1"]) == 2
