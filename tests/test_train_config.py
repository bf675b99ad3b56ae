"""The shared trainer settings: one help text per common key, per-stage defaults, choices, aliases."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatglm_rlhf.config import default_, field_, from_dict, help_lines, inherit_help, load_config
from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.models.generation import GenerationSettings, HFGenerator, make_generator
from chatglm_rlhf.policy.dpo.config import DPOConfig
from chatglm_rlhf.policy.online.config import PPOConfig
from chatglm_rlhf.policy.sft import SFTConfig
from chatglm_rlhf.reward.filtering import FilterConfig
from chatglm_rlhf.reward.rm_config import RMConfig
from chatglm_rlhf.utils.train_config import EpochTrainerConfig, TrainerConfig

STAGES = (SFTConfig, RMConfig, PPOConfig, DPOConfig)
SRC = Path(__file__).resolve().parents[1] / "src" / "chatglm_rlhf"


def _field(cls, name):
    return {f.name: f for f in dataclasses.fields(cls)}[name]


@pytest.mark.parametrize("name", ["lr", "weight_decay", "seed", "mixed_precision", "lora_r", "report_to"])
def test_common_keys_share_the_base_help(name):
    base_help = _field(TrainerConfig, name).metadata["help"]
    assert base_help
    for cls in STAGES:
        assert issubclass(cls, TrainerConfig)
        assert _field(cls, name).metadata["help"] is base_help, cls.__name__


def test_the_base_help_is_written_once_in_the_source():
    text = _field(TrainerConfig, "lr").metadata["help"]
    hits = [p for p in SRC.rglob("*.py") if text in p.read_text(encoding="utf-8")]
    assert hits == [SRC / "utils" / "train_config.py"]


def test_a_subclass_changes_only_the_default():
    assert (SFTConfig().lr, RMConfig().lr, PPOConfig().lr, DPOConfig().lr) == (5e-5, 1e-5, 1e-5, 1e-6)
    assert DPOConfig().lr_schedule == "linear" and SFTConfig().lr_schedule == "cosine"
    assert DPOConfig().warmup_ratio == 0.1 and RMConfig().warmup_ratio == 0.03
    assert PPOConfig().log_every == 1 and SFTConfig().log_every == 10
    schedule_help = _field(EpochTrainerConfig, "lr_schedule").metadata["help"]
    assert _field(DPOConfig, "lr_schedule").metadata["help"] is schedule_help
    # A stage-specific help replaces the base text only where given.
    assert "backbone" in _field(RMConfig, "model").metadata["help"]
    assert _field(SFTConfig, "model").metadata["help"] == _field(TrainerConfig, "model").metadata["help"]


def test_default_override_of_an_undeclared_field_is_an_error():
    @dataclass
    class Base:
        a: int = field_(1, help="the a")

        def __init_subclass__(cls, **kw):
            super().__init_subclass__(**kw)
            inherit_help(cls)

    @dataclass
    class Ok(Base):
        a: int = default_(2)

    assert Ok().a == 2 and _field(Ok, "a").metadata["help"] == "the a"
    with pytest.raises(TypeError, match="Bad.b"):

        @dataclass
        class Bad(Base):
            b: int = default_(3)


@pytest.mark.parametrize("cls", [SFTConfig, RMConfig, DPOConfig])
def test_a_wrong_schedule_names_the_key_and_the_choices(cls):
    with pytest.raises(ConfigError, match=r"lr_schedule must be one of \['constant', 'linear', 'cosine'\]"):
        load_config(cls, None, ["lr_schedule=linaer"])


@pytest.mark.parametrize(
    "cls, override, choices",
    [
        (SFTConfig, "mixed_precision=bf32", "'auto', 'no', 'bf16', 'fp16'"),
        (PPOConfig, "kl_estimator=k2", "'k1', 'k3'"),
        (FilterConfig, "balance=upsample", "'none', 'downsample', 'reweight'"),
        (RMConfig, "format=csv", "'auto', 'ours', 'trl_standard'"),
        (PPOConfig, "report_to=mlflow", "'none', 'tensorboard', 'wandb'"),
    ],
)
def test_every_choice_key_is_checked(cls, override, choices):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key} must be one of \[{choices}"):
        load_config(cls, None, [override])


def test_a_bare_no_gets_a_hint():
    with pytest.raises(ConfigError, match="mixed_precision .*got False.*'no'"):
        load_config(SFTConfig, None, ["mixed_precision=no"])
    assert load_config(SFTConfig, None, ["mixed_precision='no'"]).mixed_precision == "no"


def test_help_shows_the_choices():
    text = "\n".join(help_lines(SFTConfig))
    assert "  lr_schedule = 'cosine'  [constant|linear|cosine]" in text
    assert "  report_to = 'none'  [none|tensorboard|wandb]" in text
    ppo = "\n".join(help_lines(PPOConfig))
    assert "  generation.backend = 'hf'  [hf|vllm]" in ppo
    assert "  generation_backend  deprecated" in ppo


def test_report_to_defaults_keep_what_each_trainer_did():
    assert PPOConfig().report_to == "tensorboard"  # PPO always asked for TensorBoard
    assert {SFTConfig().report_to, RMConfig().report_to, DPOConfig().report_to} == {"none"}
    assert load_config(SFTConfig, None, ["report_to=wandb"]).report_to == "wandb"


def test_the_old_backend_key_is_an_alias():
    cfg = load_config(PPOConfig, None, ["generation_backend=hf", "generation.temperature=0.5"])
    assert cfg.generation.backend == "hf" and cfg.generation.temperature == 0.5
    assert not hasattr(cfg, "generation_backend")
    with pytest.raises(
        ConfigError, match=r"generation\.backend must be one of \['hf', 'vllm'\], got 'sglang'"
    ):
        load_config(PPOConfig, None, ["generation_backend=sglang"])
    data = {"generation_backend": "hf", "generation": {"backend": "other"}}
    with pytest.raises(ConfigError, match="disagree"):
        from_dict(PPOConfig, data)
    assert data == {"generation_backend": "hf", "generation": {"backend": "other"}}  # not rewritten


def test_make_generator_builds_the_backend_or_names_the_key():
    assert isinstance(make_generator(object(), _Tok(), GenerationSettings()), HFGenerator)
    with pytest.raises(
        ConfigError, match=r"generation\.backend must be one of \['hf', 'vllm'\], got 'sglang'"
    ):
        make_generator(object(), _Tok(), GenerationSettings(backend="sglang"))


class _Tok:
    eos_token_id, pad_token_id = 2, 0


def test_open_run_follows_report_to(tmp_path, capsys):
    from chatglm_rlhf.utils.training import make_accelerator, open_run

    acc = make_accelerator("no", cpu=True)
    _, log, _ = open_run(tmp_path / "a", acc, False, report_to="none")
    assert log.tb is None
    _, log, _ = open_run(tmp_path / "b", acc, False, report_to="tensorboard")
    assert log.tb is not None or "tensorboard is not installed" in capsys.readouterr().out
    import importlib.util

    if importlib.util.find_spec("wandb") is None:  # not installed: one line saying how to install it
        with pytest.raises(ConfigError, match="pip install wandb"):
            open_run(tmp_path / "c", acc, False, report_to="wandb")


def test_standalone_commands_default_to_what_the_pipelines_use():
    """One set of defaults, the paper's: `rm train` regularises the scores and `filter` reweights, as the
    real and files pipelines do (the demo keeps downsampling, its figures' setting, and says so)."""
    from chatglm_rlhf.pipeline.run import default_config
    from chatglm_rlhf.reward.filtering import FilterConfig
    from chatglm_rlhf.reward.rm_config import RMConfig

    for profile in ("real", "files"):
        cfg = default_config(profile)
        assert RMConfig().reg_coef == cfg.rm_train.reg_coef == cfg.judge_rm_train.reg_coef > 0, profile
        assert FilterConfig().balance == cfg.filter.balance == "reweight", profile
    assert default_config("default").rm.reg_coef == RMConfig().reg_coef


def test_device_is_one_word_for_every_trainer_and_steps_for_every_epoch_trainer(capsys):
    from chatglm_rlhf.errors import ConfigError
    from chatglm_rlhf.policy.dpo.config import DPOConfig
    from chatglm_rlhf.policy.online.config import PPOConfig
    from chatglm_rlhf.reward.rm_config import RMConfig

    assert load_config(PPOConfig, overrides=["device=cpu"]).cpu is True
    assert load_config(RMConfig, overrides=["device=cuda"]).cpu is False
    with pytest.raises(ConfigError, match=r"device must be one of \['cpu', 'cuda', 'auto'\], got 'gpu'"):
        load_config(DPOConfig, overrides=["device=gpu"])
    assert load_config(DPOConfig, overrides=["steps=7"]).max_steps == 7  # the online trainers' word
    assert "steps is deprecated, an old name of max_steps" in capsys.readouterr().err
