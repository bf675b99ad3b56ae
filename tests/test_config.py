from dataclasses import dataclass, field

import pytest

from chatglm_rlhf.config import field_, help_lines, load_config, parse_overrides
from chatglm_rlhf.errors import ConfigError


@dataclass
class Inner:
    r: int = field_(8, help="rank")
    modules: list[str] = field_(["q", "v"], help="targets")


@dataclass
class Cfg:
    model: str = field_("", help="the model")
    lr: float = field_(1e-3, help="learning rate")
    steps: int = field_(10, help="steps")
    flag: bool = field_(False, help="a flag")
    maybe: str | None = field_(None, help="optional")
    inner: Inner = field(default_factory=Inner)


def test_defaults_yaml_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: tiny\nlr: 0.01\ninner:\n  r: 4\n")
    cfg = load_config(Cfg, recipe, ["steps=3", "inner.modules=a,b", "lr=1e-4", "flag=true"])
    assert cfg.model == "tiny"
    assert cfg.lr == pytest.approx(1e-4)  # "1e-4" is a string to YAML; we still read it as a number
    assert cfg.steps == 3 and cfg.flag is True
    assert cfg.inner.r == 4 and cfg.inner.modules == ["a", "b"]


def test_section_of_a_pipeline_recipe(tmp_path):
    recipe = tmp_path / "p.yaml"
    recipe.write_text("sft:\n  steps: 7\nrm:\n  other: 1\n")
    assert load_config(Cfg, recipe, section="sft").steps == 7


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: unknown key lrr"):
        load_config(Cfg, recipe)
    with pytest.raises(ConfigError, match=r"command line: unknown key inner\.rank"):
        load_config(Cfg, None, ["inner.rank=3"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("steps=abc", "steps must be an integer"),
        ("flag=maybe", "flag must be true or false"),
        ("lr=x", "lr must be a number"),
    ],
)
def test_wrong_type_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Cfg, None, [override])


def test_bad_override_syntax_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["steps"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_config(Cfg, bad)
    with pytest.raises(ConfigError, match="recipe not found"):
        load_config(Cfg, tmp_path / "missing.yaml")


def test_help_lists_every_field_with_default():
    text = "\n".join(help_lines(Cfg))
    for key in ["model", "lr", "steps", "flag", "maybe", "inner.r", "inner.modules"]:
        assert f"  {key} = " in text
    assert "0.001" in text and "learning rate" in text


@dataclass
class WithCustomNested:
    inner: Inner = field(default_factory=lambda: Inner(r=2))


def test_nested_override_keeps_the_fields_own_default():
    cfg = load_config(WithCustomNested, None, ["inner.modules=k"])
    assert cfg.inner.r == 2 and cfg.inner.modules == ["k"]  # r stays the field's default, not Inner's 8
    assert "  inner.r = 2  " in "\n".join(help_lines(WithCustomNested))


def test_yaml_recipe_reads_numeric_strings_as_numbers(tmp_path):
    # YAML 1.1 reads 1e-4 (no dot) and 2e3 as strings: the recipe path reads them as the numbers meant.
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 1e-4\nsteps: 2e3\ninner:\n  r: '16'\nmodel: 1e-4\n")
    cfg = load_config(Cfg, recipe)
    assert cfg.lr == pytest.approx(1e-4) and isinstance(cfg.lr, float)
    assert cfg.steps == 2000 and isinstance(cfg.steps, int)
    assert cfg.inner.r == 16
    assert cfg.model == "1e-4"  # a string field keeps the text as written
    recipe.write_text("lr: fast\n")
    with pytest.raises(ConfigError, match="lr must be a number, got 'fast'"):
        load_config(Cfg, recipe)


def test_numeric_bounds_are_one_line_errors_naming_the_key_and_typos_get_a_suggestion(capsys):
    from chatglm_rlhf.cli.main import main

    for argv, text in (
        (["rm", "train", "lr=-1"], "lr must be > 0, got -1.0"),
        (["dpo", "max_steps=-5", "epochs=-1"], "must be"),
        (["sft", "warmup_ratio=1.5"], "warmup_ratio must be in [0, 1), got 1.5"),
        (["ppo", "kl_coeff=0.1"], "unknown key kl_coeff (did you mean kl_coef? valid:"),
        (["demo", "ppo.kl_coeff=0.1"], "unknown key ppo.kl_coeff (did you mean ppo.kl_coef?"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert text in err and "Traceback" not in err, (argv, err)
