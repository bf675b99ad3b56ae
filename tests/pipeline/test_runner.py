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
