"""The accelerate config files in recipes/accelerate parse as `accelerate launch` parses them.

Each file goes through accelerate's own launch-argument validation and environment preparation; the
FSDP and DeepSpeed plugins are then built from that environment, as each launched process would build
them. No GPU here: FSDP's device-dependent options (module-state sync, RAM-efficient loading) are
switched off for the check after asserting the file's values, and the DeepSpeed JSON is validated by
DeepSpeed's own config class when deepspeed is installed (skipped otherwise: it is not a dependency).
"""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "recipes" / "accelerate"
EXPECTED = {  # file: (distributed type, processes, machines)
    "1gpu.yaml": ("NO", 1, 1),
    "8gpu_ddp.yaml": ("MULTI_GPU", 8, 1),
    "8gpu_fsdp.yaml": ("FSDP", 8, 1),
    "8gpu_zero2.yaml": ("DEEPSPEED", 8, 1),
    "8gpu_zero3.yaml": ("DEEPSPEED", 8, 1),
    "multinode.yaml": ("DEEPSPEED", 16, 2),
    "cpu_2proc.yaml": ("MULTI_GPU", 2, 1),
}


def launch_env(name: str) -> tuple[object, dict[str, str]]:
    """(parsed args, the environment accelerate launch would give each process) for config ``name``."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "train.py"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # what accelerate's launch_command does before deepspeed_launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args)


def test_every_config_file_is_listed():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses_as_accelerate_launch_parses_it(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(CONFIGS / name))
    dist, procs, machines = EXPECTED[name]
    assert (cfg.distributed_type.value, cfg.num_processes, cfg.num_machines) == (dist, procs, machines)
    args, env = launch_env(name)
    assert args.num_processes == procs
    if dist == "FSDP":
        assert env["ACCELERATE_USE_FSDP"] == "true"
    if dist == "DEEPSPEED":
        assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
        assert Path(env["ACCELERATE_DEEPSPEED_CONFIG_FILE"]).is_file()


def test_fsdp_plugin_builds_and_wraps_the_transformer_blocks():
    from accelerate.utils import FullyShardedDataParallelPlugin

    from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer

    _, env = launch_env("8gpu_fsdp.yaml")
    assert env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
    assert env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"
    assert env["FSDP_SYNC_MODULE_STATES"] == "true" and env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"
    cpu_env = {**env, "FSDP_SYNC_MODULE_STATES": "false", "FSDP_CPU_RAM_EFFICIENT_LOADING": "false"}
    with mock.patch.dict(os.environ, cpu_env):
        plugin = FullyShardedDataParallelPlugin()
    model = build_tiny_model(train_tokenizer(["a tiny corpus"] * 3, vocab_size=270))
    plugin.set_auto_wrap_policy(model)  # the block class comes from the model's _no_split_modules
    assert plugin.transformer_cls_names_to_wrap == list(model._no_split_modules)


@pytest.mark.parametrize(
    "name,stage", [("8gpu_zero2.yaml", 2), ("8gpu_zero3.yaml", 3), ("multinode.yaml", 3)]
)
def test_deepspeed_config_is_valid(name, stage):
    from accelerate.utils import DeepSpeedPlugin

    _, env = launch_env(name)
    with mock.patch.dict(os.environ, env):
        plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == stage
    # what accelerate fills in at prepare() time; no "auto" may be left for DeepSpeed
    plugin.deepspeed_config_process(must_match=False, gradient_accumulation_steps=2, gradient_clipping=1.0)
    cfg = plugin.deepspeed_config
    assert "auto" not in str(cfg) and cfg["train_micro_batch_size_per_gpu"] == 1
    ds_config = pytest.importorskip("deepspeed.runtime.config", reason="deepspeed is not installed")
    checked = ds_config.DeepSpeedConfig(cfg)
    assert checked.zero_optimization_stage == stage and checked.gradient_accumulation_steps == 2
