"""One config style for every stage: a dataclass, filled from a YAML recipe, then ``key=value`` overrides.

* Each stage declares ``@dataclass class XConfig`` whose fields use :func:`field_` so the default and a
  one-line help text sit next to each other (``--help`` prints both).
* Nested dataclasses are allowed; override them with dotted keys (``lora.r=16``).
* An unknown key or a value of the wrong type is a :class:`ConfigError` naming the key and where it came
  from (the YAML file or the command line).
* A recipe may hold several stages (the pipeline's recipe): a stage reads its own section
  (``sft: {...}``) when ``section`` is given and present, else the whole file.
* A subclass changes only the default of an inherited field with :func:`default_` (the help text stays
  the base's, written once); :func:`inherit_help` resolves those, called from the base's
  ``__init_subclass__``.
* A choice is typed ``Literal[...]``: a wrong value is an error listing the choices, ``--help`` shows
  them as ``[a|b|c]``.
* A class attribute ``ALIASES = {"old_key": "section.new_key"}`` keeps an old key working: it is
  rewritten to the new one before unknown keys are checked.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from chatglm_rlhf.errors import ConfigError

C = TypeVar("C")

# Bounds for ``field_(check=...)``.
POSITIVE = (lambda v: v > 0, "> 0")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
FRACTION = (lambda v: 0 <= v < 1, "in [0, 1)")


def field_(default: Any = dataclasses.MISSING, help: str = "", added: bool = False,  # noqa: A002
           check: tuple[Callable[[Any], bool], str] | None = None, path: bool = False, **kw: Any) -> Any:  # fmt: skip
    """A dataclass field with a help text. Mutable defaults (lists, dicts, dataclasses) are copied.

    ``added``: a field added after runs were made whose default keeps the old behaviour; at its default
    it is left out of stage fingerprints (pipeline/fingerprint.py), so upgrading redoes no finished stage.
    ``check``: ``(predicate, what it must be)``, e.g. :data:`POSITIVE`: a value read from a recipe or the
    command line that fails it is an error naming the key (one place for every numeric bound).
    ``path``: a file or folder; a relative one in a recipe is read from the recipe's folder when it is there
    (:func:`recipe_relative`), else from the working directory.
    """
    meta = {"help": help, "added": added, "check": check, "path": path}
    if isinstance(default, (list, dict, set)) or dataclasses.is_dataclass(default):
        value = default
        return dataclasses.field(default_factory=lambda: _copy(value), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


class _Override:
    """Marks a field whose default a subclass changes; :func:`inherit_help` turns it into a field."""

    def __init__(self, default: Any, help: str | None) -> None:  # noqa: A002
        self.default, self.help = default, help


def default_(default: Any, help: str | None = None) -> Any:  # noqa: A002
    """In a subclass: a new default for a field the base declares, keeping the base's help text.

    ``help`` replaces the base's text only where the field means something more specific here (e.g.
    what ``model`` must be for this stage). The subclass must still annotate the field (dataclasses
    only re-declare annotated names); the class must call :func:`inherit_help` before ``@dataclass``.
    """
    return _Override(default, help)


def inherit_help(cls: type) -> None:
    """Replace ``cls``'s :func:`default_` markers by fields with the base field's help text.

    Runs in ``__init_subclass__``, i.e. before ``@dataclass`` reads the class body, so the dataclass
    sees ordinary fields. An override of a name no base declares is a TypeError (a typo, at import).
    """
    for name, value in list(vars(cls).items()):
        if not isinstance(value, _Override):
            continue
        bases = [b for b in cls.__mro__[1:] if name in getattr(b, "__dataclass_fields__", {})]
        if not bases:
            raise TypeError(f"{cls.__name__}.{name}: default_() overrides a field, but no base declares it")
        text = (
            bases[0].__dataclass_fields__[name].metadata.get("help", "") if value.help is None else value.help
        )
        setattr(
            cls,
            name,
            field_(value.default, help=text, check=bases[0].__dataclass_fields__[name].metadata.get("check")),
        )


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


def _resolve_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _type_name(tp: Any) -> str:
    base, optional = _strip_optional(tp)
    if typing.get_origin(base) is typing.Literal:  # the choices, as the help text used to spell them
        return "|".join(str(c) for c in typing.get_args(base)) + ("|null" if optional else "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def numeric(value: Any) -> Any:
    """A numeric-looking string as the number it means, else ``value`` unchanged.

    YAML 1.1 reads ``1e-4`` (no dot) as a string; both the recipe path (:func:`coerce`) and the
    command line (:func:`parse_overrides`) go through here so ``lr: 1e-4`` means 0.0001 everywhere.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return value


def coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check (and gently convert) ``value`` to type ``tp``; raise ConfigError naming ``key``."""
    base, optional = _strip_optional(tp)
    if base in (int, float) and isinstance(value, str):
        value = numeric(value)  # "1e-4" from a YAML recipe
    if value is None:
        if optional or tp is Any:
            return None
        raise ConfigError(f"{where}: {key} must be {_type_name(base)}, got null")
    if base is Any:
        return value
    origin = typing.get_origin(base)
    if typing.get_origin(base) is typing.Literal:
        choices = typing.get_args(base)
        # ``True in (1, 2)`` holds in Python: a bool is a choice only when it is one of the choices.
        if value not in choices or (isinstance(value, bool) and all(c is not value for c in choices)):
            # YAML reads a bare no / off as false: say how to write the string choice.
            hint = " (quote it: 'no')" if value is False and "no" in choices else ""
            raise ConfigError(f"{where}: {key} must be one of {list(choices)}, got {value!r}{hint}")
        return value
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    if base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    if base is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):  # "a,b,c" on the command line
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        (item_tp, *_) = typing.get_args(base) or (Any,)
        return [coerce(v, item_tp, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(base):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping of {base.__name__} fields")
        return from_dict(base, value, where=where, prefix=f"{key}.")
    return value


def from_dict(cls: type[C], data: dict[str, Any], where: str = "config", prefix: str = "") -> C:
    """Build dataclass ``cls`` from a (possibly nested) dict; unknown keys are errors."""
    data = _apply_value_aliases(cls, _apply_aliases(cls, data, where, prefix), where, prefix)
    hints = _resolve_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        import difflib

        near = [m for k in unknown for m in difflib.get_close_matches(k, names, n=1, cutoff=0.75)]
        hint = f"did you mean {', '.join(prefix + m for m in near)}? " if near else ""
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(prefix + k for k in unknown)} ({hint}valid: {', '.join(sorted(names))})"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        default = _field_default(fields[k])
        if isinstance(v, dict) and dataclasses.is_dataclass(default):
            # A nested section overrides the field's own default instance, not the class defaults.
            v = _merge(dataclasses.asdict(default), v)
        kwargs[k] = coerce(v, hints[k], prefix + k, where)
        bound = fields[k].metadata.get("check")
        if bound and isinstance(kwargs[k], (int, float)) and not bound[0](kwargs[k]):
            raise ConfigError(f"{where}: {prefix}{k} must be {bound[1]}, got {kwargs[k]!r}")
    return cls(**kwargs)


def _apply_aliases(cls: type, data: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
    """Rewrite ``cls.ALIASES``' old keys to their (dotted) new ones; both given and different: error."""
    aliases: dict[str, str] = getattr(cls, "ALIASES", {})
    if not any(old in data for old in aliases):
        return data
    data = _copy(data)  # the caller's dict (e.g. a recipe checked twice) stays as it was
    for old, new in aliases.items():
        if old not in data:
            continue
        value = data.pop(old)
        node = data
        *parents, last = new.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    f"{where}: {prefix}{old} is an alias of {prefix}{new}, but {p} is not a section"
                )
        _deprecated(f"{prefix}{old}", f"{prefix}{new}")
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            # A renamed section (world -> task): the old name's keys come from the user's layer (the
            # profiles use the new name), so they override the section's defaults key by key.
            node[last] = _merge(node[last], value)
            continue
        if last in node and node[last] != value:
            raise ConfigError(
                f"{where}: {prefix}{old} (an old name of {prefix}{new}) and {prefix}{new} disagree: "
                f"{value!r} vs {node[last]!r}; give only {prefix}{new}"
            )
        node[last] = value
    return data


def _apply_value_aliases(cls: type, data: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
    """``cls.VALUE_ALIASES = {"device": ("cpu", {"cpu": True, "cuda": False, "auto": False})}``: a key
    another command uses for the same meaning, with its values translated (``device=cpu`` -> ``cpu=true``)."""
    aliases: dict[str, tuple[str, dict[Any, Any]]] = getattr(cls, "VALUE_ALIASES", {})
    if not any(k in data for k in aliases):
        return data
    data = dict(data)
    for key, (target, values) in aliases.items():
        if key not in data:
            continue
        value = data.pop(key)
        if value not in values:
            raise ConfigError(f"{where}: {prefix}{key} must be one of {list(values)}, got {value!r}")
        if target in data and data[target] != values[value]:
            raise ConfigError(f"{where}: {prefix}{key}={value} and {prefix}{target}={data[target]} disagree")
        data[target] = values[value]
    return data


_NOTICED: set[tuple[str, str]] = set()


def _deprecated(old: str, new: str) -> None:
    """One line on stderr, once per process and key, when an old key name is used."""
    import sys

    if (old, new) not in _NOTICED:
        _NOTICED.add((old, new))
        print(f"note: {old} is deprecated, an old name of {new}; it still works", file=sys.stderr)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"command line: {dotted}: {p} is not a section")
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=1e-4", "lora.r=8"]`` -> nested dict; values are parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"command line: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"command line: empty key in {item!r}")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        # YAML reads "1e-4" as a string: retry as a number so float fields accept it.
        _set_dotted(tree, key, numeric(value))
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: recipe not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys to values")
    return data


def recipe_relative(cls: type, data: dict[str, Any], recipe: str | Path) -> dict[str, Any]:
    """``data`` (a recipe's) with each relative ``path`` field that exists next to the recipe rewritten to
    that file, so a recipe and its data files move together (as YAML configs of other tools do); a path
    that is not there stays as written (relative to the working directory, as before)."""
    base = Path(recipe).resolve().parent
    hints = _resolve_types(cls)
    out = dict(data)
    for f in dataclasses.fields(cls):
        value, tp = out.get(f.name), _strip_optional(hints[f.name])[0]
        if isinstance(value, dict) and dataclasses.is_dataclass(tp):
            out[f.name] = recipe_relative(tp, value, recipe)
        elif f.metadata.get("path") and isinstance(value, str) and value and not Path(value).is_absolute():
            if (base / value).exists():
                out[f.name] = str(base / value)
    return out


def load_config(
    cls: type[C],
    config_path: str | Path | None = None,
    overrides: list[str] | None = None,
    section: str | None = None,
) -> C:
    """YAML recipe (its ``section`` if present) + ``key=value`` overrides -> validated ``cls``."""
    data: dict[str, Any] = {}
    where = "defaults"
    if config_path:
        data = read_yaml(config_path)
        if section and isinstance(data.get(section), dict):
            data = data[section]
        data = recipe_relative(cls, data, config_path)
        where = str(config_path)
        from_dict(cls, data, where=where)  # file errors name the file, not the command line
    cli = parse_overrides(overrides or [])
    return from_dict(cls, _merge(data, cli), where="command line" if cli else where)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def help_lines(cls: type, prefix: str = "", instance: Any = None) -> list[str]:
    """``key = default [type] help`` for every field, nested ones dotted: for ``--help`` epilogues.

    ``instance`` supplies the defaults of a nested section (its field's default may differ from its
    class defaults).
    """
    hints = _resolve_types(cls)
    lines = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        base, _ = _strip_optional(tp)
        default = getattr(instance, f.name) if instance is not None else _field_default(f)
        if dataclasses.is_dataclass(base):
            lines.extend(
                help_lines(base, prefix + f.name + ".", None if default is dataclasses.MISSING else default)
            )
            continue
        if prefix and f.name in getattr(cls, "PIPELINE_FILLED", ()):
            continue  # a section of a pipeline config: the run fills it in (an error if given)
        if default is dataclasses.MISSING:
            default = "(required)"
        lines.append(f"  {prefix}{f.name} = {default!r}  [{_type_name(tp)}]  {f.metadata.get('help', '')}")
    for old, new in getattr(cls, "ALIASES", {}).items():
        lines.append(f"  {prefix}{old}  deprecated: an old name of {prefix}{new}")
    for key, (target, values) in getattr(cls, "VALUE_ALIASES", {}).items():
        lines.append(
            f"  {prefix}{key}  [{'|'.join(map(str, values))}]  sets {prefix}{target} (the same word as elsewhere)"
        )
    return lines


def load_profiled_config(
    cls: type[C],
    profiles: dict[str, dict[str, Any]],
    default: str,
    recipe: str | None,
    overrides: list[str],
    profile: str | None = None,
) -> tuple[C, str]:
    """A whole-pipeline config: the profile's defaults, then the recipe, then ``key=value`` overrides.

    The profile comes from the argument, an override, the recipe or ``default``, in that order. The
    recipe is checked on its own first, so that a bad key in it is reported with the file's name.
    Returns the config and where it came from (the recipe or "command line"), for later error messages.
    """
    data = recipe_relative(cls, read_yaml(recipe), recipe) if recipe else {}
    cli = parse_overrides(overrides)
    name = profile or cli.get("profile") or data.get("profile") or default
    if name not in profiles:
        raise ConfigError(f"profile must be one of {sorted(profiles)}, got {name!r}")
    if recipe:
        from_dict(cls, _merge(profiles[name], data), where=str(recipe))
    where = str(recipe) if recipe else "command line"
    return from_dict(cls, _merge(_merge(profiles[name], data), {**cli, "profile": name}), where=where), where
