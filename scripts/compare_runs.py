"""Compare two pipeline runs' metrics.json leaf by leaf: what a refactor must leave unchanged.

Wall times and throughputs (``timing``, ``seconds``, ``tokens_per_s``, ``time/``) differ between any two
runs and are left out; everything else is compared exactly (numbers with ``--tol``, default 0). Keys
present in one run only are listed apart (a layout change, not a difference in behaviour). Also compares
the per-step logs (``models/<policy>/metrics.jsonl``) of every policy both runs trained.
    python scripts/compare_runs.py OLD_RUN NEW_RUN [--tol 0]
Exit status 1 when a shared leaf differs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

VOLATILE = (
    "timing",
    "seconds",
    "tokens_per_s",
    "time/",
    "time",
    "wall_",
    "metrics_path",
    "run",
    "pairs_per_second",
)


def volatile(key: str) -> bool:
    last = key.rsplit(".", 1)[-1].split("]")[-1].lstrip(".")
    return any(last == v or last.startswith(v) for v in VOLATILE) or key.split(".", 1)[0] in ("timing", "run")


def leaves(tree, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(tree, list) and tree and all(isinstance(x, (int, float, dict)) for x in tree):
        out = {}
        for i, x in enumerate(tree):
            out.update(leaves(x, f"{prefix}[{i}]"))
        return out
    return {prefix: tree}


def equal(a, b, tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol
    return a == b


def compare(old: dict, new: dict, tol: float, label: str) -> tuple[int, int, list[str], list[str]]:
    a, b = leaves(old), leaves(new)
    shared = [k for k in a if k in b and not volatile(k)]
    diffs = [k for k in shared if not equal(a[k], b[k], tol)]
    by_key: dict[str, list[str]] = {}
    for k in diffs:  # one line per key name (a step log's keys repeat per step): count and largest change
        by_key.setdefault(re.sub(r"\[\d+\]", "[*]", k), []).append(k)
    for name, ks in by_key.items():
        nums = [
            abs(a[k] - b[k]) for k in ks if isinstance(a[k], (int, float)) and isinstance(b[k], (int, float))
        ]
        rel = [
            abs(a[k] - b[k]) / max(abs(a[k]), 1e-12)
            for k in ks
            if isinstance(a[k], (int, float)) and isinstance(b[k], (int, float))
        ]
        size = (
            f"max |diff| {max(nums):.3g}, max relative {max(rel):.3g}"
            if nums
            else f"e.g. {a[ks[0]]!r} -> {b[ks[0]]!r}"
        )
        print(f"DIFF {label}{name}: {len(ks)} values, {size}")
    only_old = sorted(k for k in a if k not in b and not volatile(k))
    only_new = sorted(k for k in b if k not in a and not volatile(k))
    return len(shared), len(diffs), only_old, only_new


def step_logs(run: Path) -> dict[str, list[dict]]:
    return {p.parent.name: [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
            for p in sorted(run.glob("models/*/metrics.jsonl"))}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--tol", type=float, default=0.0)
    args = ap.parse_args()
    old, new = Path(args.old), Path(args.new)
    n, d, only_old, only_new = compare(json.loads((old / "metrics.json").read_text()),
                                       json.loads((new / "metrics.json").read_text()), args.tol, "")  # fmt: skip
    print(f"metrics.json: {n} shared leaves, {d} differ")
    for name, keys in (("only in old", only_old), ("only in new", only_new)):
        tops = sorted({k.split("[")[0] for k in keys})
        print(f"{name} ({len(keys)} leaves): {', '.join(tops[:30])}{' ...' if len(tops) > 30 else ''}")
    logs_old, logs_new = step_logs(old), step_logs(new)
    total = 0
    for policy in sorted(set(logs_old) & set(logs_new)):
        s, dd, _, _ = compare(
            {"steps": logs_old[policy]}, {"steps": logs_new[policy]}, args.tol, f"{policy}:"
        )
        shared = [k for k in logs_old[policy][0] if k in logs_new[policy][0] and not volatile(k)]
        print(f"step log {policy}: {len(logs_old[policy])} vs {len(logs_new[policy])} steps, "
              f"{len(shared)} shared keys per step, {dd} values differ")  # fmt: skip
        total += dd
    return 1 if d or total else 0


if __name__ == "__main__":
    raise SystemExit(main())
