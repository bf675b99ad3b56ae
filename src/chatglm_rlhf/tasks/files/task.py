"""A user's JSONL files as a :class:`chatglm_rlhf.tasks.base.Task`, named in a recipe::

    profile: files
    model: path/to/sft-checkpoint        # the SFT model (a chat model with a chat template)
    task:
      prompts: prompts.jsonl             # our samples JSONL: id, prompt, history, category
      sft: sft.jsonl                     # SFT data (our samples with responses, or a preference file)
      preferences: prefs.jsonl           # ours, TRL or HH-RLHF; empty: people annotate SFT candidates

With preferences the ``split`` stage divides them leak-free (by context) like HH-RLHF's: the proxy RM's
train / eval parts, the judge RM's part and held-out pairs whose contexts are the evaluation prompts.
Without, the run stops after ``generate`` for the annotation app and resumes with ``--from split``.
There is no gold judge: a judge RM trained on its own part evaluates, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatglm_rlhf.config import field_
from chatglm_rlhf.data.parts import PartSettings, write_parts
from chatglm_rlhf.errors import UserError
from chatglm_rlhf.utils.files import atomic_write_text


@dataclass
class FilesSettings(PartSettings):
    prompts: str = field_(
        "", help="prompts JSONL (our samples): PPO/DPO prompts, and what people annotate", path=True
    )
    sft: str = field_(
        "", help="SFT data for ptx (our samples with responses); empty: the chosen answers", path=True
    )
    preferences: str = field_(
        "", help="preference JSONL (ours / TRL / HH); empty: annotate SFT candidates", path=True
    )
    category: str = field_("user", help="category given to prompts and comparisons without one")


def _existing(path: str, key: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"task.{key}: {path} not found")
    return p


class FilesTask:
    name = "files"
    prompts_label = "your"  # "held-out prompts of your preference file" (the report's words)

    def __init__(self, settings: FilesSettings) -> None:
        self.settings = settings

    def write_data(self, data_dir: Path) -> dict[str, Any]:
        """Copy the user's files into ``data/`` in our formats; the split comes later (``split``)."""
        from chatglm_rlhf.data.formats import load_comparisons
        from chatglm_rlhf.data.io import read_samples, write_jsonl

        s, out = self.settings, {}
        if not s.preferences and not s.prompts:
            raise UserError("task: give task.preferences, or task.prompts for people to annotate")
        if s.prompts:
            prompts, _ = self._copy(read_samples, "prompts", data_dir / "pref_prompts.jsonl")
            out["prompts"] = len(prompts)
        if s.preferences:
            comps, report = self._copy(load_comparisons, "preferences", data_dir / "comparisons.jsonl")
            out.update(comparisons=len(comps), rejected=len(report.rejected))
        if s.sft:
            from chatglm_rlhf.policy.sft import load_sft_examples

            examples = load_sft_examples(str(_existing(s.sft, "sft")))
            rows = [dict(sample.to_dict(), responses=[r]) for sample, r in examples]
            n_held = max(1, len(rows) // 10) if len(rows) > 1 else 0
            write_jsonl(data_dir / "user_sft_heldout.jsonl", rows[:n_held])
            write_jsonl(data_dir / "user_sft.jsonl", rows[n_held:])
            out["sft_examples"] = len(rows) - n_held
        return out

    def _copy(self, reader, key: str, dest: Path):
        """Read ``task.<key>`` with ``reader`` (report printed), give records the default category, write
        them in our format to ``dest``; no usable record is an error naming the key."""
        from chatglm_rlhf.data.io import write_jsonl

        path = getattr(self.settings, key)
        records, report = reader(_existing(path, key))
        report.print()
        if not records:
            raise UserError(f"task.{key}: {path} has no usable records")
        for r in records:
            r.category = r.category or self.settings.category
        write_jsonl(dest, records)
        return records, report

    def split(self, data_dir: Path) -> dict[str, Any]:
        """``data/comparisons.jsonl`` (given or annotated) -> the parts, prompts and SFT files."""
        import shutil

        from chatglm_rlhf.data.formats import load_comparisons

        path = data_dir / "comparisons.jsonl"
        if not path.exists():
            raise UserError(f"{path} is missing: export the annotations there, then --from split")
        comps, _ = load_comparisons(path)
        m = write_parts(comps, data_dir, self.settings, str(path))
        if (data_dir / "pref_prompts.jsonl").exists() and self.settings.preferences:
            m.update(self._user_rl_prompts(data_dir))
        if (data_dir / "user_sft.jsonl").exists():  # the user's SFT data replaces the chosen answers
            shutil.copy(data_dir / "user_sft.jsonl", data_dir / "sft.jsonl")
            shutil.copy(data_dir / "user_sft_heldout.jsonl", data_dir / "sft_heldout.jsonl")
            m["sft_examples"] = sum(1 for _ in open(data_dir / "sft.jsonl"))
        return m

    def _user_rl_prompts(self, data_dir: Path) -> dict[str, Any]:
        """The user's ``task.prompts`` as the PPO / DPO prompts (instead of the preference contexts), less
        any whose context the evaluation, dev or judge parts hold: those stay unseen by the policy."""
        import json

        from chatglm_rlhf.data.io import read_samples, write_jsonl
        from chatglm_rlhf.data.parts import sample_prompts
        from chatglm_rlhf.data.splits import context_key

        record = json.loads((data_dir / "split.json").read_text())
        held = {c for k in ("heldout", "dev", "judge_train") for c in record["contexts"].get(k, [])}
        held |= set(record["contexts"].get("eval_prompts", []))
        prompts, _ = read_samples(data_dir / "pref_prompts.jsonl")
        kept = [p for p in prompts if context_key(p) not in held]
        if not kept:
            raise UserError(f"task.prompts: every prompt's context is in the held-out parts ({len(prompts)})")
        rl = sample_prompts(kept, self.settings.n_rl, self.settings.seed)
        write_jsonl(data_dir / "rl_prompts.jsonl", rl)
        record["contexts"]["rl_prompts"] = sorted({context_key(p) for p in rl})
        atomic_write_text(data_dir / "split.json", json.dumps(record, indent=1))
        return {"rl_prompts": len(rl), "rl_prompts_from": "task.prompts",
                "task_prompts_held_out": len(prompts) - len(kept)}  # fmt: skip

    def gold_judge(self) -> None:
        return None

    def annotators(self) -> None:
        return None  # people, through the annotation app
