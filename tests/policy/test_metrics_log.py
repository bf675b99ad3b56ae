"""The one metric log of every trainer: JSONL names, TensorBoard events, an offline wandb run."""

import json
import sys
import types

import pytest

from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.utils.training import MetricsLog, train_metrics


def test_epoch_trainer_names_are_train_prefixed():
    assert train_metrics({"loss": 1.0, "rewards/accuracy": 0.5}, 1e-4) == {
        "train/loss": 1.0,
        "train/rewards/accuracy": 0.5,
        "train/lr": 1e-4,
    }


def test_report_to_none_writes_jsonl_only(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl", report_to="none")
    log.log(1, train_metrics({"loss": 2.0}, 0.1))
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
    row = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert row["train/loss"] == 2.0 and row["train/lr"] == 0.1


def test_report_to_tensorboard_writes_events(tmp_path):
    pytest.importorskip("tensorboard")
    log = MetricsLog(tmp_path / "metrics.jsonl", report_to="tensorboard")
    log.log(1, {"train/loss": 2.0})
    log.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_report_to_wandb_is_an_offline_run_under_output_dir(tmp_path, monkeypatch):
    calls = {}

    class Run:
        def log(self, metrics, step):
            calls.setdefault("log", []).append((step, metrics))

        def finish(self):
            calls["finished"] = True

    def init(**kw):
        calls["init"] = kw
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init, __spec__=object()))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())
    monkeypatch.delenv("WANDB_MODE", raising=False)
    log = MetricsLog(tmp_path / "metrics.jsonl", report_to="wandb", config={"lr": 0.1})
    log.log(3, {"train/loss": 2.0, "note": "text"})
    log.close()
    assert calls["init"]["mode"] == "offline" and calls["init"]["dir"] == str(tmp_path / "wandb")
    assert calls["init"]["config"] == {"lr": 0.1}
    assert calls["log"] == [(3, {"train/loss": 2.0})] and calls["finished"]


def test_report_to_wandb_without_the_package_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"pip install wandb"):
        MetricsLog(tmp_path / "metrics.jsonl", report_to="wandb")
