"""Bucket-based length balancing equalises "longer wins" and "shorter wins" within each bucket."""

import random

import pytest

from chatglm_rlhf.data.schema import Comparison
from chatglm_rlhf.reward.balancing import balance, bucket_labels, bucket_of, format_table, strength_strata
from chatglm_rlhf.reward.filtering import FilterConfig, Label, filter_labels


def test_bucket_of():
    edges = [3, 10]
    assert [bucket_of(d, edges) for d in (0, 1, 2, 3, 9, 10, 500)] == [
        "0", "[1,3)", "[1,3)", "[3,10)", "[3,10)", ">=10", ">=10",
    ]  # fmt: skip
    assert bucket_labels(edges) == ["0", "[1,3)", "[3,10)", ">=10"]


def _skewed(seed=0, n=400):
    """Pairs whose longer response wins 80% of the time, with differences spread over the buckets."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        short, diff = rng.randint(1, 20), rng.choice((0, 1, 2, 5, 8, 15, 40))
        longer_wins = rng.random() < 0.8
        out.append((short + diff, short) if longer_wins else (short, short + diff))
    return out


def _rates(lengths, weights, edges):
    per = {}
    for (lc, lr), w in zip(lengths, weights):
        b = bucket_of(abs(lc - lr), edges)
        if b != "0" and w > 0:
            tot, longer = per.get(b, (0.0, 0.0))
            per[b] = (tot + w, longer + w * (lc > lr))
    return {b: longer / tot for b, (tot, longer) in per.items()}


@pytest.mark.parametrize("method", ["downsample", "reweight"])
def test_balancing_equalises_each_bucket(method):
    edges = [3, 10]
    lengths = _skewed()
    weights, rows = balance(lengths, edges, method, seed=1)
    before = _rates(lengths, [1.0] * len(lengths), edges)
    assert all(r > 0.7 for r in before.values())
    after = _rates(lengths, weights, edges)
    assert set(after) == set(before)
    assert all(r == pytest.approx(0.5) for r in after.values())
    by_bucket = {r.bucket: r for r in rows}
    assert all(by_bucket[b].rate_after == pytest.approx(0.5) for b in after)
    # equal-length pairs are untouched
    assert all(w == 1.0 for (lc, lr), w in zip(lengths, weights) if lc == lr)
    if method == "downsample":
        assert set(weights) <= {0.0, 1.0}
        for b in after:
            row = by_bucket[b]
            assert row.n_after == 2 * min(row.longer_before, row.n_before - row.longer_before)
    else:
        assert all(w > 0 for w in weights)
        for b in after:  # the bucket's total weight is unchanged
            assert by_bucket[b].n_after == pytest.approx(by_bucket[b].n_before)


def test_one_sided_bucket_and_none_method():
    lengths = [(5, 1), (6, 1), (1, 1)]
    w, rows = balance(lengths, [3], "downsample")
    assert w == [0.0, 0.0, 1.0]
    w, _ = balance(lengths, [3], "reweight")
    assert w == [1.0, 1.0, 1.0]
    w, rows = balance(lengths, [3], "none")
    assert w == [1.0, 1.0, 1.0] and {r.bucket: r.rate_before for r in rows}[">=3"] == 1.0
    assert "longer wins" in format_table(rows)
    with pytest.raises(ValueError):
        balance(lengths, [3], "sideways")


def test_downsampling_is_seeded():
    lengths = _skewed(3)
    assert balance(lengths, [3, 10], seed=5)[0] == balance(lengths, [3, 10], seed=5)[0]
    assert balance(lengths, [3, 10], seed=5)[0] != balance(lengths, [3, 10], seed=6)[0]


def test_filter_balances_and_records_drops():
    labels = []
    for i in range(60):
        short = "ok"
        long = "ok " + " ".join(["more"] * (1, 4, 12)[(i // 4) % 3])  # 20 pairs in each bucket
        winner = "a" if i % 4 else "b"  # the longer (response_a) wins 3 times in 4
        c = Comparison(f"s{i}", f"Prompt number {i} please?", long, short, winner)
        labels.append(Label(c, f"f:{i + 1}"))
    res = filter_labels(labels, FilterConfig(spam_threshold=0.0, bucket_edges=[3, 10], balance="downsample"))
    kept_longer = sum(c.label == "a" for c in res.kept)
    assert kept_longer == len(res.kept) - kept_longer == 15  # 5 + 5 kept in each of the 3 buckets
    assert res.counts() == {"length_balance": 30}
    res = filter_labels(labels, FilterConfig(spam_threshold=0.0, bucket_edges=[3, 10], balance="reweight"))
    assert len(res.kept) == 60 and {round(c.meta["weight"], 3) for c in res.kept} == {0.667, 2.0}


def test_balance_within_slight_leaves_clear_preferences_alone():
    # 8 slight preferences where the longer answer always wins (a rater's length taste) and 8 clear
    # ones where the shorter always wins (quality): the whole bucket is already 50/50, so balancing
    # everything changes nothing, while balancing within the slight ones evens the biased side out.
    labels = []
    for i in range(16):
        slight = i < 8
        c = Comparison(f"s{i}", f"Prompt number {i} please?", "ok more more more more", "ok",
                       "a" if slight else "b", strength=1.0 if slight else 2.0)  # fmt: skip
        labels.append(Label(c, f"f:{i + 1}"))
    cfg = dict(spam_threshold=0.0, bucket_edges=[3, 10], balance="reweight")
    every = filter_labels(labels, FilterConfig(**cfg))
    assert {c.meta.get("weight", 1.0) for c in every.kept} == {1.0}
    res = filter_labels(labels, FilterConfig(**cfg, balance_within="slight"))
    weights = {c.sample_id: c.meta.get("weight", 1.0) for c in res.kept}
    # Slight: all 8 on the longer side, none shorter: one side only, kept at weight 1 (nothing to balance
    # against); so give the slight group both sides and check the clear ones stay at 1.
    assert all(weights[f"s{i}"] == 1.0 for i in range(8, 16))
    labels.append(Label(Comparison("s16", "Prompt number 16 please?", "ok more more more more", "ok", "b",
                                   strength=1.0), "f:17"))  # fmt: skip
    res = filter_labels(labels, FilterConfig(**cfg, balance_within="slight"))
    weights = {c.sample_id: c.meta.get("weight", 1.0) for c in res.kept}
    assert weights["s0"] == pytest.approx(9 / 16) and weights["s16"] == pytest.approx(9 / 2)
    assert all(weights[f"s{i}"] == 1.0 for i in range(8, 16))
    assert sum(r.n_before for r in res.balance_rows) == 9  # the clear pairs are in no bucket row


def test_strata_are_balanced_each_on_its_own():
    # Group x: 3 longer wins, 1 shorter (same bucket); group y: 1 longer, 3 shorter; one pair unbalanced.
    lengths = [(5, 1)] * 3 + [(1, 5)] + [(5, 1)] + [(1, 5)] * 3 + [(9, 1)]
    strata = ["x"] * 4 + ["y"] * 4 + [None]
    w, rows = balance(lengths, [3, 10], "reweight", strata=strata)
    # Each side carries half its group's bucket: 4 / (2 * 3) and 4 / (2 * 1).
    assert w[:4] == pytest.approx([2 / 3] * 3 + [2.0]) and w[4:8] == pytest.approx([2.0] + [2 / 3] * 3)
    assert w[8] == 1.0  # in no group
    assert [r.bucket for r in rows if r.n_before] == ["x [3,10)", "y [3,10)"]
    # One group, no labels: the paper's table, unchanged.
    w_all, rows_all = balance(lengths[:8], [3, 10], "reweight")
    assert w_all == [1.0] * 8 and [r.bucket for r in rows_all][:2] == ["0", "[1,3)"]
    assert strength_strata([1.0, 2.0, None], "strength") == ["slight", "clear", "slight"]
    assert strength_strata([1.0, 2.0, None], "slight") == ["slight", None, "slight"]
    assert strength_strata([1.0, 2.0], "all") is None
