"""HH-RLHF as a :class:`chatglm_rlhf.tasks.base.Task`: one preference file split leak-free by context.

No gold judge exists for real data: the pipeline evaluates with a judge RM trained on ``judge_train``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatglm_rlhf.config import field_
from chatglm_rlhf.data.parts import PartSettings, write_parts
from chatglm_rlhf.errors import UserError

HH_DEFAULT = "../shared/data/hh-rlhf/harmless-base-dev.jsonl"


def find_checkout(start: Path) -> Path | None:
    """The source checkout this module runs from: the nearest folder above ``start`` with our
    pyproject.toml (found at any depth); None for an installed wheel, which has none."""
    for folder in start.resolve().parents:
        toml = folder / "pyproject.toml"
        if toml.is_file() and 'name = "chatglm-rlhf"' in toml.read_text(encoding="utf-8", errors="replace"):
            return folder
    return None


REPO_ROOT = find_checkout(Path(__file__))


@dataclass
class HHDataSettings(PartSettings):
    path: str = field_(
        HH_DEFAULT, help="preference file (HH-RLHF or any format load_comparisons reads)", path=True
    )
    category: str = field_("harmless-base", help="category given to prompts without one (report tables)")


def resolve_data_path(path: str) -> Path:
    """A relative data path is tried from the working directory, then from the checkout's root."""
    p = Path(path).expanduser()
    roots = [Path.cwd()] + ([REPO_ROOT] if REPO_ROOT is not None else [])
    for candidate in [p] if p.is_absolute() else [r / p for r in roots]:
        if candidate.is_file():
            return candidate.resolve()
    where = " and ".join(str(r) for r in roots)
    raise UserError(
        f"task.path: {path} not found (looked in {where}); set task.path=FILE to an HH-RLHF (or any "
        f"preference) file (the default, {HH_DEFAULT}, is relative to a source checkout's root)"
    )


class HHTask:
    name = "hh"

    def __init__(self, settings: HHDataSettings) -> None:
        self.settings = settings

    @property
    def prompts_label(self) -> str:
        """What the report calls these prompts."""
        return f"HH-RLHF {self.settings.category}"

    def write_data(self, data_dir: Path) -> dict[str, Any]:
        from chatglm_rlhf.data.formats import load_comparisons

        d = self.settings
        path = resolve_data_path(d.path)
        comps, report = load_comparisons(path)
        report.print()
        if not comps:
            raise UserError(f"{path}: no usable comparisons")
        for c in comps:
            c.category = c.category or d.category
        parts = write_parts(comps, data_dir, d, str(path))
        return {"source": str(path), "read": report.read, "kept": report.kept, "rejected": len(report.rejected),
                "comparisons": len(comps), **parts}  # fmt: skip

    def gold_judge(self) -> None:
        return None

    def annotators(self) -> None:
        return None
