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
REPO_ROOT = Path(__file__).resolve().parents[4]  # src/chatglm_rlhf/tasks/hh -> the checkout


@dataclass
class HHDataSettings(PartSettings):
    path: str = field_(HH_DEFAULT, help="preference file (HH-RLHF or any format load_comparisons reads)")
    category: str = field_("harmless-base", help="category given to prompts without one (report tables)")


def resolve_data_path(path: str) -> Path:
    """A relative data path is tried from the working directory, then from the checkout's root."""
    p = Path(path).expanduser()
    for candidate in (p, REPO_ROOT / p) if not p.is_absolute() else (p,):
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(
        f"data.path: {path} not found (looked in {Path.cwd()} and {REPO_ROOT}); the real profile reads "
        f"HH-RLHF from {HH_DEFAULT} relative to the repository root, or set data.path=FILE"
    )


class HHTask:
    name = "hh"

    def __init__(self, settings: HHDataSettings) -> None:
        self.settings = settings

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
