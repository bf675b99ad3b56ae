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
        "print('torch' in sys.modules, 'chatglm_rlhf.policy.ppo.trainer' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
