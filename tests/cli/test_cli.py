"""The command line: help lists every option with its default; bad input is a clear error, exit 2."""

import json

import pytest

from chatglm_rlhf.cli.main import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("sft", "generate", "demo", "data"):
        assert cmd in out


def test_stage_help_lists_options_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["sft", "--help"])
    out = capsys.readouterr().out
    assert "lr = 5e-05" in out and "max_length = 512" in out and "trust_remote_code = False" in out


def test_unknown_key_and_wrong_type_are_errors_naming_the_key(capsys, tmp_path):
    assert main(["sft", "lrr=0.1"]) == 2
    assert "unknown key lrr" in capsys.readouterr().err
    assert main(["sft", "batch_size=big"]) == 2
    assert "batch_size must be an integer" in capsys.readouterr().err
    recipe = tmp_path / "r.yaml"
    recipe.write_text("sft:\n  epochs: many\n")
    assert main(["sft", "--config", str(recipe)]) == 2
    assert "r.yaml: epochs must be a number" in capsys.readouterr().err


def test_missing_model_is_a_clear_error(capsys):
    assert main(["sft", "data=x.jsonl"]) == 2
    assert "model=... is required" in capsys.readouterr().err


def test_data_stats_and_convert(tmp_path, capsys):
    src = tmp_path / "hh.jsonl"
    rows = [
        {
            "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: name a color\n\nAssistant: red",
            "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: name a color\n\nAssistant: I will not",
        },
        {"chosen": "\n\nHuman: 2+2?\n\nAssistant: 4", "rejected": "\n\nHuman: 2+2?\n\nAssistant: 5"},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    assert main(["data", "stats", str(src)]) == 0
    captured = capsys.readouterr()
    assert "read 3, kept 2, rejected 1" in captured.err and "hh.jsonl:3:" in captured.err
    assert "2" in captured.out and "turn" in captured.out.lower()
    out = tmp_path / "trl.jsonl"
    assert main(["data", "convert", str(src), "-o", str(out), "--to", "trl-conversational"]) == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert first["chosen"] == [{"role": "assistant", "content": "red"}]
    assert first["prompt"][-1] == {"role": "user", "content": "name a color"}


def test_top_level_help_imports_no_heavy_stage_module():
    import subprocess
    import sys

    code = (
        "import sys; from chatglm_rlhf.cli.main import build_parser; build_parser(['--help']); "
        "print('torch' in sys.modules, 'chatglm_rlhf.policy.online.loop' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


PAIR = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}


@pytest.mark.parametrize(
    "argv, key, choice",
    [
        (["data", "stats", "x.jsonl", "--format", "bogus"], "--format", "trl_standard"),
        (["data", "convert", "x.jsonl", "-o", "y.jsonl", "--format", "bogus"], "--format", "hh"),
        (["filter", "x.jsonl", "-o", "y.jsonl", "format=bogus"], "format", "trl_standard"),
        (["filter", "x.jsonl", "-o", "y.jsonl", "balance=downsampel"], "balance", "downsample"),
        (["rm", "eval", "format=bogus"], "format", "hh"),
        (["sft", "mixed_precision=bf17"], "mixed_precision", "bf16"),
        (["rm", "train", "lr_schedule=linaer"], "lr_schedule", "linear"),
        (["ppo", "mixed_precision=bf17"], "mixed_precision", "fp16"),
        (["dpo", "lr_schedule=linaer"], "lr_schedule", "cosine"),
        (["sft", "--mixed-precision", "bf17"], "mixed_precision", "bf16"),
        (["sft", "report_to=tensorbord"], "report_to", "wandb"),
    ],
)
def test_a_wrong_choice_is_one_line_naming_the_key_and_the_choices(argv, key, choice, capsys):
    with pytest.raises(SystemExit) if argv[0] == "data" else _no_exit() as e:
        rc = main(argv)
    rc = e.value.code if argv[0] == "data" else rc
    err = capsys.readouterr().err
    assert rc == 2 and key in err and choice in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith(("error", "chatglm-rlhf"))]) == 1


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("cmd", ["stats", "convert", "filter"])
def test_an_empty_input_file_is_an_error_naming_it(cmd, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = str(tmp_path / "out.jsonl")
    argv = {"stats": ["data", "stats", str(empty)], "convert": ["data", "convert", str(empty), "-o", out]}
    assert main(argv.get(cmd, ["filter", str(empty), "-o", out])) == 2
    err = capsys.readouterr().err
    assert f"error: {empty}: no records" in err and "Traceback" not in err
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("cmd", ["stats", "convert", "filter"])
def test_strict_exits_non_zero_when_a_line_is_rejected(cmd, tmp_path, capsys):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps(PAIR) + "\nnot json\n")
    out = str(tmp_path / "out.jsonl")
    argv = {"stats": ["data", "stats", str(src)], "convert": ["data", "convert", str(src), "-o", out]}
    argv = argv.get(cmd, ["filter", str(src), "-o", out, "spam_threshold=0"])
    assert main(argv) == 0  # without --strict: reported and skipped
    capsys.readouterr()
    assert main([*argv, "--strict"]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 records rejected and strict is on" in err and "p.jsonl:2: invalid JSON" in err


def test_key_value_options_and_threads(tmp_path):
    import torch

    from chatglm_rlhf.cli.common import options_as_overrides
    from chatglm_rlhf.cli.main import build_parser

    argv = ["sft", "--lr", "1e-4", "--max-length=64", "--cpu", "data=x.jsonl", "--config", "r.yaml"]
    parser = build_parser(argv)
    assert options_as_overrides(parser, argv) == [
        "sft", "lr=1e-4", "max_length=64", "cpu=true", "data=x.jsonl", "--config", "r.yaml"
    ]  # fmt: skip
    assert options_as_overrides(parser, ["data", "stats", "--format", "hh"]) == [
        "data",
        "stats",
        "--format",
        "hh",
    ]
    before = torch.get_num_threads()
    try:
        pairs = tmp_path / "p.jsonl"
        pairs.write_text(json.dumps(PAIR) + "\n")
        # filter has no threads field of its own, and still takes the key.
        assert main(["filter", str(pairs), "-o", str(tmp_path / "o.jsonl"), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_threads_must_not_be_negative(capsys):
    assert main(["sft", "threads=-1"]) == 2
    assert "threads must be >= 0" in capsys.readouterr().err


def test_a_missing_model_folder_is_one_line_naming_the_key(tmp_path, capsys):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps(PAIR) + "\n")
    missing = tmp_path / "no" / "model"
    for argv in (
        ["sft", f"model={missing}", f"data={data}"],
        ["rm", "train", f"model={missing}", f"data={data}"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"error: model={missing}: no such folder" in err and "Traceback" not in err


def test_report_to_wandb_without_wandb_says_how_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    assert main(["sft", "report_to=wandb", "model=m", "data=d"]) == 2
    err = capsys.readouterr().err
    assert "report_to=wandb needs the wandb package: pip install wandb" in err


def test_the_cli_format_choices_are_the_readers_formats():
    # Written out in cli/data_cmd.py so --help need not import the readers; they must stay the same list.
    import typing

    from chatglm_rlhf.cli.data_cmd import FORMAT_CHOICES
    from chatglm_rlhf.data.formats import InputFormat

    assert FORMAT_CHOICES == list(typing.get_args(InputFormat))


def test_data_stats_on_a_file_with_no_usable_record_is_an_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"foo": 1}\n{"bar": 2}\n')
    assert main(["data", "stats", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "no usable preference record" in err and "Traceback" not in err
