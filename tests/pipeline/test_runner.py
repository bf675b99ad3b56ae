import json

import pytest

from chatglm_rlhf.errors import UserError
from chatglm_rlhf.pipeline.runner import Stage, run_stages


def _stages(calls):
    def make(name, fail=False):
        def run(run_dir):
            calls.append(name)
            if fail:
                raise RuntimeError("killed")
            (run_dir / f"{name}.out").write_text(name)
            return {"value": len(calls)}

        return run

    return make


def test_resume_skips_finished_stages_and_from_redoes(tmp_path):
    calls = []
    make = _stages(calls)
    # First run dies in stage b: a is done, b is not.
    with pytest.raises(RuntimeError):
        run_stages(tmp_path, [Stage("a", make("a")), Stage("b", make("b", fail=True)), Stage("c", make("c"))])
    assert calls == ["a", "b"]
    calls.clear()
    metrics = run_stages(tmp_path, [Stage("a", make("a")), Stage("b", make("b")), Stage("c", make("c"))])
    assert calls == ["b", "c"]  # a was not redone
    assert metrics["a"] == {"value": 1} and metrics["c"] == {"value": 2}
    assert json.loads((tmp_path / "metrics.json").read_text())["b"] == {"value": 1}
    calls.clear()
    run_stages(
        tmp_path, [Stage("a", make("a")), Stage("b", make("b")), Stage("c", make("c"))], from_stage="b"
    )
    assert calls == ["b", "c"]
    with pytest.raises(UserError, match="unknown stage"):
        run_stages(tmp_path, [Stage("a", make("a"))], from_stage="zzz")


def test_until_stops_after_that_stage_and_a_rerun_goes_on(tmp_path):
    calls = []
    make = _stages(calls)
    stages = [Stage("a", make("a")), Stage("b", make("b")), Stage("c", make("c"))]
    metrics = run_stages(tmp_path, stages, until="b")
    assert calls == ["a", "b"] and metrics["paused_after"] == "b" and "c" not in metrics
    calls.clear()
    metrics = run_stages(tmp_path, stages)
    assert calls == ["c"] and "paused_after" not in metrics
    with pytest.raises(UserError, match="--until zzz: unknown stage"):
        run_stages(tmp_path, stages, until="zzz")


def test_a_moved_run_folder_still_matches_its_markers(tmp_path):
    import shutil

    calls = []
    make = _stages(calls)

    def stages(run):  # settings that name a path inside the run, as a model path does
        return [Stage("a", make("a"), settings={"model": str(run / "models" / "sft")}),
                Stage("b", make("b"), settings={"init": str(run / "models" / "a"), "steps": 2})]  # fmt: skip

    run_stages(tmp_path / "one", stages(tmp_path / "one"))
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    calls.clear()
    run_stages(tmp_path / "two", stages(tmp_path / "two"))
    assert calls == []  # nothing redone in the copy
    moved = stages(tmp_path / "two")
    moved[1].settings["steps"] = 3
    run_stages(tmp_path / "two", moved)
    assert calls == ["b"]  # a real change still redoes its stage


def test_markers_written_with_absolute_paths_still_match_and_are_rewritten(tmp_path):
    from chatglm_rlhf.pipeline import fingerprint as F

    calls = []
    settings = {"model": str(tmp_path / "models" / "sft")}
    old_fp = F.fingerprint(settings, {}, "")  # what the runner wrote before paths were run-relative
    (tmp_path / "stages").mkdir()
    marker = tmp_path / "stages" / "a.done.json"
    marker.write_text(json.dumps({"stage": "a", "seconds": 1.0, "metrics": {"value": 7}, "fingerprint": old_fp,
                                  "settings": settings, "inputs": {}}))  # fmt: skip
    metrics = run_stages(tmp_path, [Stage("a", _stages(calls)("a"), settings=settings)])
    assert calls == [] and metrics["a"] == {"value": 7}
    info = json.loads(marker.read_text())
    assert info["fingerprint"] != old_fp and info["settings"] == {"model": "<run>/models/sft"}


@pytest.mark.parametrize("damage", ["truncated", "not a marker"])
def test_a_corrupt_stage_marker_is_a_one_line_error_not_a_silent_redo(tmp_path, damage):
    calls = []
    make = _stages(calls)
    stages = lambda: [Stage("a", make("a")), Stage("b", make("b"))]  # noqa: E731
    run_stages(tmp_path, stages())
    marker_path = tmp_path / "stages" / "a.done.json"
    text = marker_path.read_text()
    marker_path.write_text(text[: len(text) // 2] if damage == "truncated" else "[1, 2]")
    calls.clear()
    with pytest.raises(
        UserError, match=r"a\.done\.json: unreadable stage marker .* delete the file or rerun with --from a"
    ):
        run_stages(tmp_path, stages())
    assert calls == []  # nothing redone, nothing thrown away
    run_stages(tmp_path, stages(), from_stage="a")  # what the message says works
    assert calls == ["a", "b"]


def test_a_corrupt_metrics_file_is_rebuilt_from_the_markers(tmp_path, capsys):
    calls = []
    make = _stages(calls)
    stages = lambda: [Stage("a", make("a")), Stage("b", make("b"))]  # noqa: E731
    first = run_stages(tmp_path, stages())
    (tmp_path / "metrics.json").write_text('{"a": {"val')  # a run killed while writing it
    calls.clear()
    again = run_stages(tmp_path, stages())
    assert calls == [] and again == first  # every stage's metrics back, nothing redone
    assert "metrics.json is unreadable: rebuilding it from the stage markers" in capsys.readouterr().out
    assert json.loads((tmp_path / "metrics.json").read_text()) == first
