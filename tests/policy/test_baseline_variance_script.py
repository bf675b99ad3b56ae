"""scripts/baseline_variance.py on a hand-made PPO folder."""

import json
import math

import pytest


def test_decomposition_by_hand(tmp_path, repo_script):
    # Prompt A: samples 1, 3 and reference 2; prompt B: 5, 7 and 6. Between-prompt variance 4 (means 2, 6),
    # within 1: share 0.8. std r = std(1, 3, 5, 7) = sqrt(5); r - r_ref = (-1, 1, -1, 1): std 1.
    (tmp_path / "prompt_filter.jsonl").write_text(
        json.dumps({"key": "a", "scores": [1.0, 3.0]})
        + "\n"
        + json.dumps({"key": "b", "scores": [5.0, 7.0]})
        + "\n"
    )
    (tmp_path / "reference_baseline.jsonl").write_text(
        json.dumps({"key": "a", "score": 2.0}) + "\n" + json.dumps({"key": "b", "score": 6.0}) + "\n"
    )
    out = repo_script("scripts/baseline_variance.py").one(tmp_path)
    assert out["prompts"] == 2 and out["k"] == 2
    assert out["between_prompt_share"] == pytest.approx(0.8)
    # Unbiased: within variance 2 (n - 1 denominator); the means' variance 4 less 2 / k = 1 leaves 3: 3 / 5.
    assert out["between_prompt_share_unbiased"] == pytest.approx(0.6)
    assert out["reference_answers"] == 1
    assert out["std_r"] == pytest.approx(math.sqrt(5)) and out["std_r_minus_ref"] == pytest.approx(1.0)
