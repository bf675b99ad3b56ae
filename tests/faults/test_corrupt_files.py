"""A truncated or garbled file the run wrote earlier: one line naming the file and what to do, never a
traceback and never a silent redo that throws away finished work (docs/faults.md)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import files  # noqa: F401 - the session fixture

from chatglm_rlhf.cli.main import main
from chatglm_rlhf.errors import CorruptFileError
from chatglm_rlhf.pipeline.runner import Stage, run_stages
from chatglm_rlhf.utils.files import check_safetensors

pytestmark = pytest.mark.faults


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    line = err[-1]
    assert line.startswith("error: ") and "Traceback" not in "\n".join(err), err
    for n in needles:
        assert n in line, line
    return line


@pytest.fixture(scope="module")
def rm_run(files, tmp_path_factory):  # noqa: F811
    """An RM trained 3 steps with a checkpoint at step 2 (and the final model)."""
    out = tmp_path_factory.mktemp("rm_run") / "rm"
    args = ["rm", "train", f"model={files / 'sft'}", f"data={files / 'pairs.jsonl'}", f"output_dir={out}",
            "max_steps=3", "batch_size=2", "max_length=48", "progress=false", "cpu=true", "save_every=2"]  # fmt: skip
    assert main(args) == 0
    return out, args


@pytest.mark.parametrize(
    "damage", ["model.safetensors", "optimizer.bin", "trainer_state.json", "random_states_0.pkl"]
)
def test_a_corrupt_checkpoint_stops_resume_with_one_line(rm_run, tmp_path, capsys, damage):
    out, args = rm_run
    copy = tmp_path / "rm"
    shutil.copytree(out, copy)
    step = copy / "checkpoints" / "step-2"
    truncate(step / damage)
    capsys.readouterr()
    assert (
        main([*[a for a in args if not a.startswith("output_dir=")], f"output_dir={copy}", "resume=true"])
        == 2
    )
    one_line_error(capsys, str(step), "unreadable checkpoint", "run without resume=true")
    assert (step / damage).exists()  # nothing deleted behind the user's back


def test_a_truncated_model_file_names_the_file(rm_run, tmp_path, capsys, files):  # noqa: F811
    model = tmp_path / "sft"
    shutil.copytree(files / "sft", model)
    truncate(model / "model.safetensors", 0.9)
    with pytest.raises(CorruptFileError, match="truncated"):
        check_safetensors(model / "model.safetensors")
    out, args = rm_run
    swapped = [a for a in args if not a.startswith(("model=", "output_dir="))]
    assert main([*swapped, f"model={model}", f"output_dir={tmp_path / 'o'}"]) == 2
    one_line_error(capsys, f"model={model}", "model.safetensors", "truncated", "save the model again")


def test_garbage_in_place_of_a_safetensors_header(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}")
    with pytest.raises(CorruptFileError, match="not a safetensors file"):
        check_safetensors(bad)


def test_a_cut_short_comparisons_file_is_an_error_not_one_rejected_line(files, tmp_path, capsys):  # noqa: F811
    cut = tmp_path / "pairs.jsonl"
    text = (files / "pairs.jsonl").read_text()
    cut.write_text(text[: len(text) - 40])  # the last record loses its end (and its newline)
    assert main(["rm", "train", f"model={files / 'sft'}", f"data={cut}", f"output_dir={tmp_path / 'o'}",
                 "max_steps=1", "progress=false", "cpu=true"]) == 2  # fmt: skip
    one_line_error(capsys, f"{cut}:24", "cut short", "write it again")


def test_in_a_pipeline_the_error_names_the_stage_to_redo(files, tmp_path):  # noqa: F811
    """A stage reading a model an earlier stage saved, now truncated: --from that stage."""
    from chatglm_rlhf.models.loading import load_causal_lm

    def sft(run_dir):
        shutil.copytree(files / "sft", run_dir / "models" / "sft")
        return {}

    def ppo(run_dir):
        load_causal_lm(str(run_dir / "models" / "sft"), device="cpu")
        return {}

    stages = [Stage("sft", sft), Stage("ppo", ppo)]
    run_stages(tmp_path, stages)
    truncate(tmp_path / "models" / "sft" / "model.safetensors")
    with pytest.raises(CorruptFileError) as e:
        run_stages(tmp_path, stages, from_stage="ppo")
    assert "truncated" in str(e.value) and str(e.value).endswith(
        "rerun with --from sft to redo the stage that wrote it"
    )
    assert json.loads((tmp_path / "stages" / "sft.done.json").read_text())["stage"] == "sft"  # kept
