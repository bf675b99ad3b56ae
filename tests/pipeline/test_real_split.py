"""The real profile's split (v2): dev and heldout parts, data/split.json, and no evaluation prompt in
RL, proxy RM or judge RM training (each judge's share included)."""

from __future__ import annotations

import json

import pytest
from real_fixtures import load_real_config, real_ctx, write_hh_file

from chatglm_rlhf.data.formats import load_comparisons
from chatglm_rlhf.data.splits import context_key
from chatglm_rlhf.pipeline.stages import data
from chatglm_rlhf.pipeline.stages.reward import judge_share
from chatglm_rlhf.tasks.hh.task import HH_DEFAULT, REPO_ROOT


def _split_run(tmp_path, path, overrides=()):
    cfg = load_real_config(None, [f"task.path={path}", *overrides])
    run = real_ctx(cfg, tmp_path / "run")
    return cfg, run, data.data(run)


def _assert_no_leak(cfg, run):
    ctx = {name: {context_key(c) for c in run.comparisons(name)}
           for name in ("rm_train", "rm_eval", "judge_train", "dev", "heldout")}  # fmt: skip
    evaluation = {context_key(s) for s in run.samples("eval_prompts")}
    dev = {context_key(s) for s in run.samples("dev_prompts")}
    rl = {context_key(s) for s in run.samples("rl_prompts")}
    shares = [{context_key(c) for c in judge_share(run.comparisons("judge_train"), i, cfg.judges, cfg.task.seed)}
              for i in range(cfg.judges)]  # fmt: skip
    assert evaluation and dev and rl
    for trained in (rl, ctx["rm_train"], ctx["judge_train"], *shares, dev):
        assert not evaluation & trained  # RL, proxy RM, every judge's share, and checkpoint selection
    assert not dev & (rl | ctx["rm_train"] | ctx["judge_train"])
    assert not shares[0] & shares[1] and shares[0] | shares[1] == ctx["judge_train"]  # disjoint judges
    record = json.loads((run.data / "split.json").read_text())
    assert set(record["contexts"]["eval_prompts"]) == evaluation
    assert set(record["contexts"]["rl_prompts"]) == rl
    for name, keys in ctx.items():
        assert set(record["contexts"][name]) == keys, name
    return evaluation, ctx


def test_tiny_split_has_dev_and_leaks_nothing(tmp_path):
    hh = write_hh_file(tmp_path / "hh.jsonl", n=120)
    cfg, run, m = _split_run(tmp_path, hh)
    assert cfg.judges == 2 and cfg.task.dev > 0 and cfg.task.n_eval == 0
    evaluation, ctx = _assert_no_leak(cfg, run)
    assert len(evaluation) == len(ctx["heldout"]) == m["eval_prompts"]  # every heldout context
    assert m["eval_contexts_seen_in_training"] == 0 and m["dev_prompts"] == len(ctx["dev"]) > 0


def test_the_shared_hh_file_gives_at_least_200_eval_prompts(tmp_path):
    path = REPO_ROOT / HH_DEFAULT
    if not path.is_file():
        pytest.skip(f"{path} is absent (a fresh clone has no ../shared)")
    cfg, run, m = _split_run(tmp_path, path)
    evaluation, _ = _assert_no_leak(cfg, run)
    assert m["eval_prompts"] == len(evaluation) >= 200
    assert len(load_comparisons(run.data / "judge_train.jsonl")[0]) >= 400  # ~216 pairs per judge


def test_dev_share_is_checked():
    from chatglm_rlhf.errors import ConfigError

    with pytest.raises(ConfigError, match=r"task\.dev"):
        load_real_config(None, ["task.dev=1.5"])
    with pytest.raises(ConfigError, match="judges"):
        load_real_config(None, ["judges=0"])


def test_the_checkout_is_found_at_any_depth_and_a_wheel_gets_a_one_line_error(tmp_path, monkeypatch):
    from chatglm_rlhf.errors import UserError
    from chatglm_rlhf.tasks.hh import task

    deep = tmp_path / "a" / "b" / "c" / "d" / "e" / "f"
    deep.mkdir(parents=True)
    (tmp_path / "a" / "pyproject.toml").write_text('[project]\nname = "chatglm-rlhf"\n')
    assert task.find_checkout(deep / "task.py") == tmp_path / "a"
    assert task.find_checkout(tmp_path / "elsewhere" / "task.py") is None  # an installed wheel: none
    monkeypatch.setattr(task, "REPO_ROOT", None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"task\.path: \.\./shared/.* not found .* set task\.path=FILE"):
        task.resolve_data_path(task.HH_DEFAULT)
