"""Dataset statistics on a hand-counted two-comparison example."""

from __future__ import annotations

import pytest

from chatglm_rlhf.data.schema import Comparison, Turn
from chatglm_rlhf.data.stats import WORD_RE, count_tokens, dataset_stats, format_stats_table


def _comparisons() -> list[Comparison]:
    return [
        Comparison(
            sample_id="a",
            prompt="Why is the sky blue?",  # why is the sky blue ? -> 6
            response_a="Rayleigh scattering.",  # 3
            response_b="No idea",  # 2
            label="a",
        ),
        Comparison(
            sample_id="b",
            prompt="天空为什么是蓝色",  # 8 CJK characters
            response_a="因为散射。",  # 4 characters + 1 punctuation = 5
            response_b="It's blue!",  # it ' s blue ! -> 5
            label="tie",
            history=[
                Turn("system", "Be brief."),  # 3
                Turn("user", "Hi"),  # 1
                Turn("assistant", "Hello, how can I help?"),  # hello , how can i help ? -> 7
            ],
        ),
    ]


def test_regex_counter():
    assert WORD_RE.findall("It's 2024, ok?") == ["It", "'", "s", "2024", ",", "ok", "?"]
    assert count_tokens("中文abc 12") == 4  # 中, 文, abc, 12
    assert count_tokens("") == 0


def test_stats_on_hand_example():
    stats = dataset_stats(_comparisons())
    assert stats["n_comparisons"] == 2 and stats["n_ties"] == 1
    assert stats["mean_turns"] == pytest.approx((1 + 2) / 2)
    assert stats["mean_history_tokens"] == pytest.approx((0 + 3 + 1 + 7) / 2)
    assert stats["mean_prompt_tokens"] == pytest.approx((6 + 8) / 2)
    assert stats["mean_response_tokens"] == pytest.approx((3 + 2 + 5 + 5) / 4)
    assert stats["tokenizer"] == "regex"


def test_stats_with_tokenizer_uses_its_counts():
    class CharTokenizer:  # one token per character: easy to count by hand
        name_or_path = "chars"

        def encode(self, text, add_special_tokens=False):
            return list(range(len(text)))

    stats = dataset_stats(_comparisons(), tokenizer=CharTokenizer())
    assert stats["mean_prompt_tokens"] == pytest.approx((20 + 8) / 2)
    assert stats["tokenizer"] == "chars"


def test_empty_and_table():
    assert dataset_stats([])["mean_turns"] == 0.0
    table = format_stats_table(dataset_stats(_comparisons()))
    lines = table.splitlines()
    assert lines[0].startswith("Statistic") and set(lines[1]) == {"-", " "}
    assert any(line.startswith("Comparisons") and line.endswith(" 2") for line in lines)
    assert any(line.startswith("Turns per dialogue (mean)") and line.endswith("1.5") for line in lines)
    assert len({len(line) for line in lines}) == 1  # columns aligned
