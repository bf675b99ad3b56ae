"""The fault suite: tiny checkpoints and data files, and the CLI run as a real process (so SIGKILL is a
real crash). ``make test`` runs the fast cases; ``make faults`` runs them all (``-m faults``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from chatglm_rlhf.utils.faults import KILL_ENV

TEXTS = ["What is 2 plus 3?", "The answer is 5.", "List two fruits.", "Apple, pear."] * 10
TINY = dict(hidden_size=32, num_heads=4, num_kv_heads=2)
CLI = [
    sys.executable,
    "-c",
    "import sys; from chatglm_rlhf.cli.main import main; sys.exit(main(sys.argv[1:]))",
]


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> Path:
    """A tiny SFT model, a reward model made from it, prompts, SFT demonstrations and preference pairs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatglm_rlhf.data.io import write_jsonl
    from chatglm_rlhf.data.schema import DialogueSample
    from chatglm_rlhf.models.tiny import make_tiny_checkpoint
    from chatglm_rlhf.reward.model import reward_model_from_causal, save_reward_model

    root = tmp_path_factory.mktemp("faults")
    sft = make_tiny_checkpoint(root / "sft", TEXTS, vocab_size=300, **TINY)
    tok = AutoTokenizer.from_pretrained(sft)
    save_reward_model(reward_model_from_causal(AutoModelForCausalLM.from_pretrained(sft), tok), tok,
                      root / "rm", {"max_length": 64})  # fmt: skip
    write_jsonl(
        root / "prompts.jsonl", [DialogueSample(id=f"p{i}", prompt=f"What is {i} plus 2?") for i in range(4)]
    )
    write_jsonl(root / "sft.jsonl", [DialogueSample(id=f"s{i}", prompt="List two fruits.", responses=["Apple, pear."])
                                     for i in range(3)])  # fmt: skip
    pairs = [
        {"id": f"c{i}", "prompt": f"What is {i} plus 3?", "response_a": f"The answer is {i + 3}.",
         "response_b": "Apple, pear.", "label": "a" if i % 3 else "b"}
        for i in range(24)
    ]  # fmt: skip
    (root / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return root


def run_cli(
    args: list[str], kill_after: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``chatglm-rlhf ARGS`` in a fresh process on one thread (deterministic, and fast for tiny models);
    ``kill_after`` (``<log path part>:<step>``) makes it SIGKILL itself after that step is logged."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop(KILL_ENV, None)
    if kill_after:
        env[KILL_ENV] = kill_after
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def assert_killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def raw_rows(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x.strip()]


def log_rows(folder: Path) -> list[dict]:
    """The per-step metric log without what differs run to run (clock time, throughput)."""
    return [{k: v for k, v in r.items() if not k.startswith(("time", "tokens_per_s", "perf/"))}
            for r in raw_rows(folder)]  # fmt: skip


def assert_same_run(a: Path, b: Path, atol: float = 1e-6) -> None:
    """Same final weights (to ``atol``) and the same per-step metrics, step for step."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    worst = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)
    assert worst <= atol, f"weights differ by {worst:g}"
    print(f"max |weight difference| {worst:g}")
    ra, rb = log_rows(a), log_rows(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], float):
                assert y[k] == pytest.approx(x[k], rel=1e-5, abs=1e-6), (x["step"], k)
            else:
                assert y[k] == x[k], (x["step"], k)
