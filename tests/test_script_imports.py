"""Every name that scripts/ and benchmarks/ import from the package exists: they import inside their
functions (to start fast), so a renamed library function would only fail when someone runs them."""

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FILES = sorted([*REPO.glob("scripts/*.py"), *REPO.glob("benchmarks/*.py")])


def package_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every ``from chatglm_rlhf... import name`` anywhere in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chatglm_rlhf"):
            out += [(node.lineno, node.module, alias.name) for alias in node.names]
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_package_name_a_script_imports_exists(path):
    missing = []
    for line, module, name in package_imports(path):
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            try:  # a submodule imported by name (from chatglm_rlhf.pipeline import runner)
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{path.name}:{line}: {module}.{name}")
    assert not missing, "renamed or removed: " + ", ".join(missing)


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("def main():\n    from chatglm_rlhf.pipeline.stages.rounds import _gone\n")
    assert package_imports(script) == [(2, "chatglm_rlhf.pipeline.stages.rounds", "_gone")]
    assert not hasattr(importlib.import_module("chatglm_rlhf.pipeline.stages.rounds"), "_gone")
