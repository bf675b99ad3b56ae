"""What a finished stage ran with, so that a rerun with other settings or other input files redoes it.

A stage's *settings* are the values its profile bound to it (dataclasses, numbers, paths), written as a
JSON-able tree by :func:`canonical` without the keys that change no result (``progress``, ``threads``).
Its *fingerprint* hashes those settings, the content of every input file or folder they name outside the
run folder, and the fingerprint of the stage before it, so a change upstream reaches every later stage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

COSMETIC = frozenset({"progress", "threads", "log_every"})  # keys that change no stage's result


def canonical(value: Any) -> Any:
    """``value`` as plain JSON types: dataclasses as dicts (cosmetic keys dropped), paths as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A section may name fields that change nothing at their current values (vLLM settings under
        # backend=hf): left out, so that adding such a field does not redo finished runs.
        unused = set(value.unused_fields()) if hasattr(value, "unused_fields") else set()
        # A field renamed since runs were made enters under its old name (``FINGERPRINT_NAMES``).
        names = getattr(value, "FINGERPRINT_NAMES", {})
        return {
            names.get(f.name, f.name): canonical(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in COSMETIC and f.name not in unused and not _added_at_default(value, f)
        }
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items() if k not in COSMETIC}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return type(value).__name__  # an object (a scorer, a judge): its class is what is known of it


def _added_at_default(value: Any, f: dataclasses.Field) -> bool:
    """A field marked ``added`` (config.field_) at its default: what runs made before it did."""
    if not f.metadata.get("added"):
        return False
    if f.default is not dataclasses.MISSING:
        return getattr(value, f.name) == f.default
    if f.default_factory is not dataclasses.MISSING:
        return getattr(value, f.name) == f.default_factory()
    return False


def _strings(tree: Any) -> list[str]:
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in _strings(v)]
    if isinstance(tree, list):
        return [s for v in tree for s in _strings(v)]
    return [tree] if isinstance(tree, str) else []


def path_digest(path: Path) -> str:
    """A file's content hash; a folder's: every file's relative name, size and modification time."""
    h = hashlib.sha1()
    if path.is_file():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    else:
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            st = p.stat()
            h.update(f"{p.relative_to(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def external_inputs(settings: Any, run_dir: Path) -> dict[str, str]:
    """{path: digest} for every existing file or folder the settings name outside ``run_dir``."""
    out = {}
    run_dir = run_dir.resolve()
    for s in _strings(settings):
        if not s or len(s) > 4096 or "\n" in s or not ("/" in s or "." in s):
            continue  # names such as "ppo" or "none" are no paths
        p = Path(s).expanduser()
        try:
            if not p.exists():
                continue
            resolved = p.resolve()
        except OSError:
            continue
        if resolved == run_dir or run_dir in resolved.parents or resolved == Path("/"):
            continue  # outputs of earlier stages are covered by their own fingerprints
        out[s] = path_digest(resolved)
    return out


def in_run(tree: Any, run_dir: Path) -> Any:
    """``tree`` with paths inside ``run_dir`` written as ``<run>/...``, so that a run folder that was
    moved or copied still matches its markers (an SFT model at out/a/models/sft is the same input at
    out/b/models/sft: the stages' own fingerprints cover what it holds)."""
    roots = sorted({str(run_dir).rstrip("/"), str(run_dir.resolve()).rstrip("/")}, key=len, reverse=True)

    def one(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: one(x) for k, x in v.items()}
        if isinstance(v, list):
            return [one(x) for x in v]
        if isinstance(v, str):
            for root in roots:
                if v == root or v.startswith(root + "/"):
                    return "<run>" + v[len(root) :]
        return v

    return one(tree)


def fingerprint(settings: Any, inputs: dict[str, str], upstream: str) -> str:
    blob = json.dumps({"settings": settings, "inputs": inputs, "upstream": upstream}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``["sft.steps: 120 -> 10", ...]``: the leaves that differ between two settings trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old or k not in new:
                out.append(f"{key}: {old.get(k, '(none)')!r} -> {new.get(k, '(none)')!r}")
            else:
                out += changes(old[k], new[k], key)
        return out
    return [] if old == new else [f"{prefix or 'settings'}: {old!r} -> {new!r}"]
