"""Agreement measures against published values and hand-computed cases."""

from __future__ import annotations

import pytest

from chatglm_rlhf.collect.annotate.agreement import (
    cohen_kappa,
    count_cycles,
    krippendorff_alpha,
    majority_agreement,
    mean_pairwise_kappa,
)


def _units(*coders):
    return [[v for v in unit if v is not None] for unit in zip(*coders)]


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units.
K2011 = _units(
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
)
# The worked example on Wikipedia's "Krippendorff's alpha" page: 3 coders, 15 units.
WIKI = _units(
    [None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
    [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
    [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4],
)


@pytest.mark.parametrize(
    ("units", "level", "expected"),
    [
        (K2011, "nominal", 0.743),
        (K2011, "ordinal", 0.815),
        (K2011, "interval", 0.849),
        (WIKI, "nominal", 0.691),
        (WIKI, "interval", 0.811),
    ],
)
def test_krippendorff_alpha_matches_published_values(units, level, expected):
    assert krippendorff_alpha(units, level) == pytest.approx(expected, abs=5e-4)


def test_krippendorff_alpha_edge_cases():
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert krippendorff_alpha([["a"], ["b"]]) is None  # nothing pairable
    assert krippendorff_alpha([["a", "a"], ["a", "a"]]) is None  # no expected disagreement


def test_cohen_kappa_hand_computed():
    # 50 items: both "yes" 20, both "no" 15, disagreements 10 + 5: p_o = 0.7, p_e = 0.5 -> kappa 0.4
    pairs = [("y", "y")] * 20 + [("n", "n")] * 15 + [("y", "n")] * 5 + [("n", "y")] * 10
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert cohen_kappa([("a", "a")] * 3) is None
    assert cohen_kappa([]) is None


def test_mean_pairwise_kappa_and_majority_spot_a_random_annotator():
    labels = {}
    spam = ["a", "b", "tie"]
    for i in range(30):
        truth = "a" if i % 2 else "b"
        labels[i] = {"u1": truth, "u2": truth, "u3": truth, "spammer": spam[i % 3]}
    kappa, pairs = mean_pairwise_kappa(labels)
    assert pairs == 6 and kappa < 0.9
    agree = majority_agreement(labels)
    assert agree["u1"] == (30, 30)
    hits, n = agree["spammer"]
    assert n == 30 and hits / n < 0.5


def test_majority_skips_split_votes():
    four = {"w": "a", "x": "a", "y": "a", "z": "b"}
    assert majority_agreement({1: four}) == {"w": (1, 1), "x": (1, 1), "y": (1, 1), "z": (0, 1)}
    # x and y each see the others split (a vs b): left out; z sees a majority of "a".
    assert majority_agreement({1: {"x": "a", "y": "a", "z": "b"}}) == {"x": (0, 0), "y": (0, 0), "z": (0, 1)}
    assert majority_agreement({1: {"x": "a", "y": "b"}, 2: {"x": "a", "y": "b", "z": "tie"}})["z"] == (0, 0)


def test_cycles():
    # 0 > 1, 1 > 2, 2 > 0: a cycle.   0 > 1, 1 > 2, 0 > 2: transitive.
    assert count_cycles({(0, 1): "a", (1, 2): "a", (0, 2): "b"}) == (1, 1)
    assert count_cycles({(0, 1): "a", (1, 2): "a", (0, 2): "a"}) == (1, 0)
    assert count_cycles({(0, 1): "a", (1, 2): "tie", (0, 2): "b"}) == (0, 0)
    assert count_cycles({(0, 1): "a"}) == (0, 0)
