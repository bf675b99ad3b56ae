"""The pipeline hooks: run_filter_stage and run_rm_stage with a gold function."""

import random

import pytest
import torch

from chatglm_rlhf.data.io import write_jsonl
from chatglm_rlhf.data.schema import Comparison, DialogueSample
from chatglm_rlhf.models.tiny import make_tiny_checkpoint
from chatglm_rlhf.reward.stages import (
    gold_agreement,
    length_tie_probe,
    run_filter_stage,
    run_rm_stage,
    split_by_prompt,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread avoids OpenMP spin-waits on a busy machine
    yield
    torch.set_num_threads(n)


def gold(sample, a, b):
    """Gold prefers the answer that says "yes"; two "yes" answers tie."""
    ya, yb = a.startswith("yes"), b.startswith("yes")
    return "tie" if ya == yb else ("a" if ya else "b")


def labelled(n_prompts, seed, spam=True):
    rng = random.Random(seed)
    out = []
    for i in range(n_prompts):
        prompt = f"Please answer question {i} now?"
        good, bad = (
            "yes " + " ".join(["ok"] * rng.randint(0, 3)),
            "no " + " ".join(["ok"] * rng.randint(0, 3)),
        )
        for u in ("h1", "h2", "h3"):
            out.append(Comparison(f"p{i}", prompt, good, bad, "a", annotator=u, meta={"gold_label": "a"}))
        if spam:
            lab = rng.choice("ab")
            out.append(
                Comparison(f"p{i}", prompt, good, bad, lab, annotator="spam", meta={"gold_label": "a"})
            )
    return out


def test_gold_agreement_counts_decisive_pairs():
    data = [
        Comparison("s", "q?", "yes", "no", "a"),
        Comparison("s", "q?", "yes", "no", "b"),
        Comparison("s", "q?", "yes", "yes ok", "a"),  # gold tie
    ]
    agree = gold_agreement(data, gold)
    assert agree == {"n": 3, "all": pytest.approx(1 / 3), "n_decisive": 2, "decisive": 0.5}


def test_run_filter_stage_reports_gold_agreement_and_spammers(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", labelled(30, 0))
    m = run_filter_stage(tmp_path / "c.jsonl", tmp_path / "f", {"balance": "none"})
    assert m["spammers"] == ["spam"]
    assert m["read"] == 120 and m["dropped"]["spammer"] == 30
    assert m["gold_agreement_after"] == 1.0 > m["gold_agreement_before"]
    assert (tmp_path / "f" / "filtered.jsonl").exists() and (
        tmp_path / "f" / "filtered.dropped.jsonl"
    ).exists()


def test_split_by_prompt_keeps_prompts_apart():
    data = labelled(20, 1, spam=False)
    train, ev = split_by_prompt(data, 0.25, seed=0)
    assert len(train) + len(ev) == len(data)
    assert not {c.prompt for c in train} & {c.prompt for c in ev}
    assert len({c.prompt for c in ev}) == 5


def test_run_rm_stage_metrics(tmp_path):
    data = labelled(48, 2, spam=False)
    train, ev = split_by_prompt(data, 0.25, seed=0)
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "eval.jsonl", ev)
    base = make_tiny_checkpoint(
        tmp_path / "base", [c.prompt + " yes no ok" for c in data], vocab_size=300, hidden_size=32
    )
    ties = [Comparison("t", "Please answer question 1 now?", "yes ok ok", "yes", "tie")] * 3
    cfg = {
        "lr": 3e-3,
        "batch_size": 16,
        "epochs": 3,
        "max_length": 32,
        "progress": False,
        "warmup_ratio": 0.0,
    }
    m = run_rm_stage(
        base, tmp_path / "train.jsonl", tmp_path / "eval.jsonl", tmp_path / "rm", cfg, gold, ties
    )
    assert m["eval_accuracy"] > 0.9 and m["gold_accuracy"] > 0.9
    assert m["gold_pairs"] == 12  # unique pairs of the 12 held-out prompts
    assert m["length_probe"]["n"] == 3 and "length_correlation" in m
    assert (tmp_path / "rm" / "rm_stage_metrics.json").exists()


def test_length_tie_probe_sign():
    class LengthLover:
        tokenizer = None

        def score_comparisons(self, comparisons):
            return [len(c.response_a) for c in comparisons], [len(c.response_b) for c in comparisons]

    from chatglm_rlhf.models.tiny import train_tokenizer

    probe_scorer = LengthLover()
    probe_scorer.tokenizer = train_tokenizer(["yes ok ok ok"], vocab_size=280)
    pairs = [Comparison("t", "q?", "yes" + " ok" * k, "yes", "tie") for k in (1, 2, 3, 4)]
    probe = length_tie_probe(probe_scorer, pairs)
    assert probe["pearson"] == pytest.approx(1.0) and probe["longer_wins"] == 1.0
    assert length_tie_probe(probe_scorer, [])["n"] == 0


def test_gold_fn_gets_the_full_sample_when_samples_are_given(tmp_path):
    def meta_gold(sample, a, b):  # like GoldJudge: needs the sample's meta, which comparisons lack
        want = sample.meta["gold"]
        return "a" if a.startswith(want) else "b"

    data = labelled(12, 3)
    samples = [
        DialogueSample(f"p{i}", f"Please answer question {i} now?", meta={"gold": "yes"}) for i in range(12)
    ]
    write_jsonl(tmp_path / "c.jsonl", data)
    with pytest.raises(KeyError):
        run_filter_stage(tmp_path / "c.jsonl", tmp_path / "f0", {"balance": "none"}, gold_fn=meta_gold)
    m = run_filter_stage(tmp_path / "c.jsonl", tmp_path / "f", {"balance": "none"}, meta_gold, samples)
    assert m["gold_agreement_after"] == 1.0
