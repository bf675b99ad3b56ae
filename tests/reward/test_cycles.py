"""Cycle detection on hand-made preference graphs (edges point from winner to loser)."""

from chatglm_rlhf.reward.aggregation import cycle_edges, strongly_connected_components


def test_no_cycle_in_a_total_order():
    edges = [("a", "b"), ("b", "c"), ("a", "c"), ("c", "d")]
    assert cycle_edges(edges) == set()


def test_three_cycle_flags_exactly_its_edges():
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "d"), ("d", "e")]
    assert cycle_edges(edges) == {0, 1, 2}


def test_two_cycle_from_conflicting_labels():
    assert cycle_edges([("a", "b"), ("b", "a"), ("b", "c")]) == {0, 1}


def test_self_loop_is_a_cycle():
    assert cycle_edges([("a", "a"), ("a", "b")]) == {0}


def test_nested_cycles_share_one_component():
    # a>b>c>a with a second cycle a>b>d>a sharing the edge a>b; the tail a>e>f is acyclic.
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("b", "d"), ("d", "a"), ("a", "e"), ("e", "f")]
    assert cycle_edges(edges) == {0, 1, 2, 3, 4}
    comps = [c for c in strongly_connected_components({n for e in edges for n in e}, edges) if len(c) > 1]
    assert comps == [{"a", "b", "c", "d"}]


def test_chord_inside_a_cycle_is_on_a_cycle():
    # a>b>c>d>a plus the chord a>c: a>c>d>a is a cycle too, so the chord is inconsistent as well.
    edges = [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("a", "c")]
    assert cycle_edges(edges) == {0, 1, 2, 3, 4}


def test_two_separate_cycles_and_a_bridge():
    edges = [("a", "b"), ("b", "a"), ("b", "x"), ("x", "y"), ("y", "z"), ("z", "x")]
    assert cycle_edges(edges) == {0, 1, 3, 4, 5}


def test_long_chain_needs_no_recursion():
    n = 5000
    chain = [(i, i + 1) for i in range(n)]
    assert cycle_edges(chain) == set()
    assert cycle_edges([*chain, (n, 0)]) == set(range(n + 1))
