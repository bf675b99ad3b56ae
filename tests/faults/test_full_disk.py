"""A write that runs out of space: one line, and nothing half-written under a final name; the run
folder keeps every finished stage and the failed stage has no marker, so a rerun redoes just it.

Out of space is made with a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored): writes past it fail with
EFBIG, as they fail with ENOSPC on a full disk, through the same code; it needs no root and no mount."""

from __future__ import annotations

import json
import resource
import signal
import subprocess

import pytest
from conftest import CLI, files  # noqa: F401 - the session fixture

from chatglm_rlhf.pipeline.runner import Stage, run_stages
from chatglm_rlhf.utils.files import atomic_save, atomic_write_text, is_disk_full

pytestmark = pytest.mark.faults


def limited(max_bytes: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return preexec


def leftovers(folder) -> list[str]:
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if ".saving." in p.name or p.suffix == ".tmp"
    )


def test_rm_training_on_a_full_disk_is_one_line_and_leaves_no_half_model(files, tmp_path):  # noqa: F811
    out = tmp_path / "rm"
    size = (files / "sft" / "model.safetensors").stat().st_size
    proc = subprocess.run(
        [*CLI, "rm", "train", f"model={files / 'sft'}", f"data={files / 'pairs.jsonl'}", f"output_dir={out}",
         "max_steps=2", "batch_size=2", "max_length=48", "progress=false", "cpu=true"],
        capture_output=True, text=True, timeout=300, preexec_fn=limited(size // 2),
    )  # fmt: skip
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert err[-1].startswith("error: ") and "too large" in err[-1] and "Free some space" in err[-1]
    assert "Traceback" not in proc.stderr
    assert not (out / "model.safetensors").exists() and leftovers(tmp_path) == []


def test_a_stage_that_fills_the_disk_leaves_the_run_folder_as_before(tmp_path):
    def data(run_dir):
        atomic_write_text(run_dir / "data" / "small.json", json.dumps({"n": 1}))
        return {"n": 1}

    def model(run_dir):
        with atomic_save(run_dir / "models" / "rm") as tmp:
            (tmp / "config.json").write_text("{}")
            (tmp / "model.safetensors").write_bytes(b"x" * 200_000)
        return {"saved": True}

    stages = [Stage("data", data), Stage("rm", model)]
    run_stages(tmp_path, stages[:1])
    before = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        with pytest.raises(OSError) as e:
            run_stages(tmp_path, stages)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert is_disk_full(e.value)
    after = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    after.pop("stages/rm.started.json")  # the only new file: "rm started", so a rerun knows
    assert after == before  # no marker for rm, metrics.json as it was, no half-written model, no temp files
    assert [p.name for p in (tmp_path / "models" / "rm").iterdir()] == []
    run_stages(tmp_path, stages)  # space again: the rerun redoes rm only
    assert json.loads((tmp_path / "metrics.json").read_text())["rm"] == {"saved": True}


def test_a_save_replaces_every_weight_file_of_the_previous_one(tmp_path):
    """A sharded save then a single-file one: the old shards and their index go, other files stay."""
    out = tmp_path / "m"
    with atomic_save(out) as tmp:
        for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                     "model.safetensors.index.json", "config.json"):  # fmt: skip
            (tmp / name).write_text("old")
    (out / "metrics.jsonl").write_text("{}\n")  # a trainer's log beside the model
    with atomic_save(out) as tmp:
        (tmp / "model.safetensors").write_text("new")
        (tmp / "config.json").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors"]
    assert (out / "config.json").read_text() == "new"
