"""Post-filtering rules: ties, duplicates, spammers, cycles, prompt rules and the drop ledger."""

import json
from collections import Counter

import pytest

from chatglm_rlhf.data.schema import Comparison, Turn
from chatglm_rlhf.reward.aggregation import annotator_agreement, canonical_label, majority, oriented_label
from chatglm_rlhf.reward.filter_run import output_paths, run_filter
from chatglm_rlhf.reward.filtering import FilterConfig, Label, PromptRules, filter_labels, prompt_problem

PROMPT = "Which fruit is the best one?"


def cmp(a, b, label, annotator=None, prompt=PROMPT, **kw):
    return Comparison(
        sample_id="s", prompt=prompt, response_a=a, response_b=b, label=label, annotator=annotator, **kw
    )


def labels(*comparisons):
    return [Label(c, f"in.jsonl:{i + 1}") for i, c in enumerate(comparisons)]


def cfg(**kw):
    base = dict(balance="none", spam_threshold=0.0)
    base.update(kw)
    return FilterConfig(**base)


def reasons(result):
    return Counter(d.reason for d in result.dropped)


def test_orientation_and_majority_helpers():
    c1, c2 = cmp("x", "y", "a"), cmp("y", "x", "b")
    assert canonical_label(c1) == canonical_label(c2) == "lo"
    assert oriented_label("lo", c2) == "b" and oriented_label("hi", c2) == "a"
    assert majority(["lo", "lo", "hi"]) == ("lo", pytest.approx(2 / 3))
    assert majority(["lo", "hi"])[0] is None


def test_majority_vote_merges_labels_and_drops_the_outvoted():
    res = filter_labels(
        labels(cmp("x", "y", "a", "u1"), cmp("y", "x", "b", "u2"), cmp("x", "y", "b", "u3")), cfg()
    )
    assert len(res.kept) == 1 and res.kept[0].label == "a" and res.kept[0].response_a == "x"
    assert res.kept[0].meta["votes"] == {"a": 2, "b": 1}
    assert res.kept[0].meta["agreement"] == pytest.approx(2 / 3)
    assert reasons(res) == {"outvoted": 1} and res.kept_labels == 2
    assert res.pair_agreement == pytest.approx(2 / 3) and res.multi_label_pairs == 1


def test_split_vote_is_no_majority():
    res = filter_labels(labels(cmp("x", "y", "a", "u1"), cmp("x", "y", "b", "u2")), cfg())
    assert res.kept == [] and reasons(res) == {"no_majority": 2}


def test_ties_dropped_or_kept_as_soft_labels():
    data = labels(cmp("x", "y", "tie", "u1"), cmp("x", "y", "tie", "u2"), cmp("p", "q", "a", "u1"))
    dropped = filter_labels(data, cfg())
    assert reasons(dropped) == {"tie": 2} and [c.response_a for c in dropped.kept] == ["p"]
    kept = filter_labels(data, cfg(keep_ties=True))
    assert sorted(c.label for c in kept.kept) == ["a", "tie"] and not kept.dropped


def test_exact_duplicates_are_dropped_once():
    data = labels(cmp("x", "y", "a", "u1"), cmp("y", "x", "b", "u1"), cmp("x", "y", "a", "u2"))
    res = filter_labels(data, cfg())
    assert reasons(res) == {"duplicate": 1}
    assert res.dropped[0].source == "in.jsonl:2" and "in.jsonl:1" in res.dropped[0].detail
    assert res.kept[0].meta["votes"] == {"a": 2}
    assert reasons(filter_labels(data, cfg(dedupe=False))) == {}


def test_empty_and_identical_responses():
    res = filter_labels(labels(cmp("x", "  ", "a"), cmp("same", "same", "a"), cmp("x", "y", "b")), cfg())
    assert reasons(res) == {"empty_response": 1, "identical_responses": 1} and len(res.kept) == 1


def test_prompt_rules():
    rules = PromptRules()
    assert prompt_problem(cmp("x", "y", "a", prompt="Hi"), rules)[0] == "prompt_too_short"
    history = [Turn("user", "Name a fruit."), Turn("assistant", "Apple.")]
    assert prompt_problem(cmp("x", "y", "a", prompt="Why?", history=history), rules) is None
    assert prompt_problem(cmp("x", "y", "a", prompt="?!?! ??? !!"), rules)[0] == "prompt_unclear"
    assert prompt_problem(cmp("x", "y", "a", prompt="test test test test"), rules)[0] == "prompt_unclear"
    assert (
        prompt_problem(cmp("x", "y", "a", prompt="asdfgh"), PromptRules(min_words=1))[0] == "prompt_unclear"
    )
    assert prompt_problem(cmp("x", "y", "a", prompt="What is 2 + 2?"), rules) is None
    assert prompt_problem(cmp("x", "y", "a", prompt="Hi"), PromptRules(enabled=False)) is None
    custom = PromptRules(unclear_patterns=[r"\bblah\b"])
    assert prompt_problem(cmp("x", "y", "a", prompt="blah blah what now"), custom)[0] == "prompt_unclear"


def _spam_data(n_pairs=12):
    """Three honest annotators who always pick the shorter text, and one who always picks the longer."""
    out = []
    for i in range(n_pairs):
        good, bad = f"r{i}", f"r{i} is long"
        for u in ("h1", "h2", "h3"):
            out.append(cmp(good, bad, "a", u, prompt=f"Question number {i}?"))
        out.append(cmp(good, bad, "b", "spam", prompt=f"Question number {i}?"))
    return out


def test_annotator_agreement_is_leave_one_out():
    data = labels(*_spam_data(4))
    agreement = annotator_agreement([(lab.key, lab.comparison.annotator, lab.canon) for lab in data])
    assert agreement["spam"] == (0, 4) and agreement["h1"] == (4, 4)


def test_spammer_labels_are_dropped():
    res = filter_labels(labels(*_spam_data()), cfg(spam_threshold=0.5, spam_min_items=10))
    assert set(res.spammers) == {"spam"}
    assert reasons(res) == {"spammer": 12}
    assert all(c.meta["votes"] == {"a": 3} for c in res.kept)
    # too few scored items: not judged
    res = filter_labels(labels(*_spam_data(5)), cfg(spam_threshold=0.5, spam_min_items=10))
    assert res.spammers == {} and reasons(res) == {"outvoted": 5}


def test_when_no_one_agrees_with_the_majority_no_one_is_a_spammer(capsys):
    # Two annotators who always disagree (noise labels on equally bad answers): each agrees with "the
    # others" 0% of the time. Dropping both would leave nothing; the filter says so and keeps them.
    data = []
    for i in range(12):
        data += [cmp("x", f"y{i}", "a", "u1", prompt=f"Question number {i}?"),
                 cmp("x", f"y{i}", "b", "u2", prompt=f"Question number {i}?")]  # fmt: skip
    res = filter_labels(labels(*data), cfg(spam_threshold=0.5, spam_min_items=10))
    assert res.spammers == {} and "spammer" not in reasons(res)
    assert "no one is dropped as a spammer" in capsys.readouterr().out


def test_cycles_are_dropped_per_prompt():
    data = labels(
        cmp("a", "b", "a"),
        cmp("b", "c", "a"),
        cmp("c", "a", "a"),  # a>b>c>a
        cmp("a", "d", "a"),  # not on the cycle
        cmp("a", "b", "b", prompt="Another prompt here?"),  # same texts, other prompt: no cycle
    )
    res = filter_labels(data, cfg())
    assert reasons(res) == {"cycle": 3}
    assert sorted((c.prompt, c.response_b) for c in res.kept) == [
        ("Another prompt here?", "b"),
        (PROMPT, "d"),
    ]
    assert reasons(filter_labels(data, cfg(drop_cycles=False))) == {}


def test_without_aggregation_conflicts_form_two_cycles():
    data = labels(cmp("x", "y", "a", "u1"), cmp("x", "y", "b", "u2"), cmp("x", "z", "a", "u1"))
    res = filter_labels(data, cfg(aggregate=False))
    assert reasons(res) == {"cycle": 2} and len(res.kept) == 1


def test_kept_plus_dropped_equals_read_on_a_mix():
    data = [*_spam_data(), cmp("x", "", "a"), cmp("q", "q", "b"), cmp("x", "y", "tie", prompt="Hi")]
    data += [cmp("a", "b", "a"), cmp("b", "c", "a"), cmp("c", "a", "a")]
    res = filter_labels(labels(*data), cfg(spam_threshold=0.5, balance="downsample"), unreadable=["f:9: bad"])
    assert res.read == len(data) + 1
    assert res.kept_labels + len(res.dropped) == res.read
    assert res.counts()["unreadable"] == 1


def _write(path, comparisons, extra_lines=()):
    with open(path, "w") as f:
        for c in comparisons:
            f.write(json.dumps(c.to_dict()) + "\n")
        for line in extra_lines:
            f.write(line + "\n")


def test_run_filter_writes_outputs_and_ledger(tmp_path, capsys):
    src = tmp_path / "prefs.jsonl"
    _write(src, [*_spam_data(), cmp("x", "x", "a")], extra_lines=["{not json", '{"prompt": "p"}'])
    out = tmp_path / "filtered.jsonl"
    res = run_filter(FilterConfig(input=str(src), output=str(out), balance="none"))
    paths = output_paths(out)
    kept = [json.loads(line) for line in paths["kept"].read_text().splitlines()]
    dropped = [json.loads(line) for line in paths["dropped"].read_text().splitlines()]
    summary = json.loads(paths["summary"].read_text())
    assert len(kept) == 12 and len(dropped) == len(res.dropped)
    assert summary["read"] == 12 * 4 + 3 == summary["kept_labels"] + summary["dropped"]
    assert summary["dropped_by_reason"] == {"unreadable": 2, "identical_responses": 1, "spammer": 12}
    assert {d["source"] for d in dropped if d["reason"] == "unreadable"} == {f"{src}:50", f"{src}:51"}
    printed = capsys.readouterr().out
    assert "spammer" in printed and "kept + dropped = read" in printed and "longer wins" in printed


def test_filter_cli(tmp_path):
    from chatglm_rlhf.cli.main import main

    src = tmp_path / "p.jsonl"
    _write(src, _spam_data())
    out = tmp_path / "o.jsonl"
    assert main(["filter", str(src), "-o", str(out), "spam_threshold=0.5", "balance=none"]) == 0
    assert len(out.read_text().splitlines()) == 12
    assert main(["filter", str(src), "-o", str(out), "prompt.min_words=9", "balance=none"]) == 0
    summary = json.loads(output_paths(out)["summary"].read_text())
    assert summary["dropped_by_reason"] == {"prompt_too_short": 48}
    assert main(["filter", str(tmp_path / "missing.jsonl"), "-o", str(out)]) == 2


def test_streamed_file_equals_the_in_memory_filter(tmp_path):
    """run_filter streams a JSONL file into votes and re-reads lines by byte offset when it writes:
    a byte-order mark, blank lines, CRLF line ends, non-ASCII text and a bad line must not shift a
    line, and the outputs equal filter_labels' on the same comparisons."""
    data = [*_spam_data(), cmp("x", "", "a"), cmp("a", "b", "a"), cmp("b", "c", "a"), cmp("c", "a", "a")]
    data += [cmp("été", "über", "b", "u9", history=[Turn("user", "héllo"), Turn("assistant", "ok")])]
    src = tmp_path / "prefs.jsonl"
    lines = [json.dumps(c.to_dict(), ensure_ascii=False) for c in data]
    lines[3:3] = ["", "{not json"]
    src.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    config = dict(spam_threshold=0.5, balance="reweight")
    res = run_filter(FilterConfig(input=str(src), output=str(tmp_path / "out.jsonl"), **config), quiet=True)
    numbered = [i + 1 for i, line in enumerate(lines) if line.startswith('{"')]
    mem = filter_labels(
        [Label(c, f"{src}:{n}") for c, n in zip(data, numbered)], cfg(**config), unreadable=[f"{src}:5: x"]
    )
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written == [c.to_dict() for c in mem.kept] and len(written) == len(res.kept) > 10
    assert written[-1]["response_a"] == "été" and written[-1]["meta"]["sources"] == [f"{src}:{numbered[-1]}"]
    ledger = [json.loads(line) for line in (tmp_path / "out.dropped.jsonl").read_text().splitlines()]
    assert [d["reason"] for d in ledger] == [d.reason for d in mem.dropped]
    assert [d["comparison"] for d in ledger[1:]] == [d.comparison.to_dict() for d in mem.dropped[1:]]
    assert [d["source"] for d in ledger[1:]] == [d.source for d in mem.dropped[1:]]
    assert ledger[0]["source"] == f"{src}:5" and ledger[0]["comparison"] is None


def test_in_a_pipeline_the_filter_says_one_line_and_none_when_nothing_is_dropped(
    tmp_path, capsys, monkeypatch
):
    from chatglm_rlhf.utils import console

    monkeypatch.setattr(console, "_quiet", True)
    src = tmp_path / "prefs.jsonl"
    _write(src, [cmp("p", "good answer", "a"), cmp("q", "another answer", "b")])
    run_filter(FilterConfig(input=str(src), output=str(tmp_path / "out.jsonl"), balance="none"))
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == ["filter: kept 2 of 2 labels (2 pairs); dropped none"]
