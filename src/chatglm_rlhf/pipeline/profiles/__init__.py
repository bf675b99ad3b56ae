"""Every profile by name: ``default`` / ``smoke`` (demo world), ``real`` / ``real-smoke`` (HH-RLHF),
``files`` (a user's JSONL files). Adding one: a module here declaring ``PROFILES`` and a line below."""

from __future__ import annotations

import importlib

from chatglm_rlhf.pipeline.profiles.base import Profile

MODULES = ("chatglm_rlhf.pipeline.profiles.demo", "chatglm_rlhf.pipeline.profiles.real",
           "chatglm_rlhf.pipeline.profiles.files")  # fmt: skip


def all_profiles() -> dict[str, Profile]:
    out: dict[str, Profile] = {}
    for module in MODULES:
        out.update({p.name: p for p in importlib.import_module(module).PROFILES})
    return out
