"""A new user's smoke run on an idle machine and on one where another job holds every core.

Runs ``chatglm-rlhf demo --profile smoke`` in a fresh process per measurement, each in its own run
folder, under these settings, alternating, ``--rounds`` times:

* ``idle``            nothing else running
* ``busy``            one pure-Python busy loop per core running alongside (another user's job)

and for each, how long an idle OpenMP (libgomp) thread spins before it sleeps: ``spin10k``
(GOMP_SPINCOUNT=10000, what the CLI sets now), ``default`` (300,000, libgomp's own default, what ran
before) and ``passive`` (OMP_WAIT_POLICY=PASSIVE: no spinning). The thread count is torch's default in
every case, so the runs compute the same numbers. Wall time per run;
medians and ratios in a table, the runs in ``benchmarks/results/busy_smoke.json``.

    python benchmarks/busy_smoke.py [--rounds 2] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
POLICIES = {
    "spin10k": {"GOMP_SPINCOUNT": "10000", "OMP_WAIT_POLICY": ""},
    "default": {"GOMP_SPINCOUNT": "300000", "OMP_WAIT_POLICY": ""},
    "passive": {"GOMP_SPINCOUNT": "10000", "OMP_WAIT_POLICY": "PASSIVE"},
}


def hog(stop_at: float) -> None:
    """Keep one core busy (no OpenMP, no torch): what another job on a shared laptop does."""
    x = 0
    while time.time() < stop_at:
        x += 1


def smoke(out: Path, policy: str, timeout: float) -> float:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **POLICIES[policy]}
    cmd = [sys.executable, "-m", "chatglm_rlhf.cli.main", "demo", "--profile", "smoke", "--out", str(out),
           "progress=false"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise SystemExit(f"smoke failed ({policy}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def measure(load: str, policy: str, timeout: float, root: Path) -> float:
    hogs = []
    if load == "busy":
        stop_at = time.time() + timeout
        hogs = [mp.Process(target=hog, args=(stop_at,), daemon=True) for _ in range(os.cpu_count() or 2)]
        for h in hogs:
            h.start()
        time.sleep(1.0)
    try:
        return smoke(Path(tempfile.mkdtemp(dir=root)) / "run", policy, timeout)
    finally:
        for h in hogs:
            h.terminate()
            h.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    cases = [(load, policy) for load in ("idle", "busy") for policy in POLICIES]
    runs: dict[str, list[float]] = {f"{load}/{policy}": [] for load, policy in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for load, policy in cases if r % 2 == 0 else cases[::-1]:
                s = measure(load, policy, args.timeout, Path(tmp))
                runs[f"{load}/{policy}"].append(s)
                print(f"round {r + 1}: {load:<4} {policy:<7} {s:7.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"\n{'case':<14} {'median s':>9} {'x idle (same policy)':>21}")
    for k, v in med.items():
        print(f"{k:<14} {v:9.1f} {v / med['idle/' + k.split('/')[1]]:21.2f}")
    out = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "runs_s": runs,
        "median_s": med,
        "busy_over_idle": {p: med[f"busy/{p}"] / med[f"idle/{p}"] for p in POLICIES},
        "busy_over_idle_default": {p: med[f"busy/{p}"] / med["idle/default"] for p in POLICIES},
        "idle_over_idle_default": {p: med[f"idle/{p}"] / med["idle/default"] for p in POLICIES},
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "busy_smoke.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {HERE / 'results' / 'busy_smoke.json'}")


if __name__ == "__main__":
    main()
