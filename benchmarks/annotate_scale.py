"""The annotation app at the paper's scale: 221,866 comparisons (ChatGLM-RLHF, Hou et al. 2024).

A synthetic candidates file of the paper's size and shape is streamed to disk: 2.4 earlier user /
assistant exchanges of history on average, ~314 / 104 / 268 tokens of history / prompt / response
(about 4 characters a token, words drawn by a seeded generator, so the file is the same every run);
k = 3 responses per sample and all pairs, so 73,955 samples give 221,865 pairs and one more sample
with k = 2 the last. Per back end (SQLite file, PostgreSQL scratch database) it measures, each
command a fresh process (wall time, and peak RSS from GNU time; see :func:`measure`):

1. ``annotate load`` of the file;
2. one judgement per pair, three on every 10th sample's pairs (so agreement and cycles have units),
   inserted in bulk (not measured as a product figure: it stands in for months of annotation);
3. 20 annotators against a real ``annotate serve``: the item page (next item) and the form post
   (submit), paced (think time between items) and flat out (no think time);
4. ``annotate stats`` (agreement included), ``annotate export`` and ``chatglm-rlhf filter`` on it.

Everything runs at ``--scale`` and at ``--scale / --growth`` (default 8), so that memory growth with
the number of comparisons shows. Prints a table; writes ``benchmarks/results/annotate_scale.json``.

    python benchmarks/annotate_scale.py                     # full scale, SQLite and PostgreSQL
    python benchmarks/annotate_scale.py --scale 0.05        # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import annotate_load as load_bench  # noqa: E402 - a sibling script, not a package

PAPER_PAIRS = 221_866
HISTORY_TURNS, HISTORY_TOKENS, PROMPT_TOKENS, RESPONSE_TOKENS = 2.4, 314, 104, 268
TURNS = (0, 1, 2, 3, 4, 4, 3, 2, 2, 3)  # earlier exchanges per sample, cycled: mean 2.4
OVERLAP_EVERY = 10  # every 10th sample's pairs get three judgements, the others one
ANNOTATORS = 20
RESULTS = Path(__file__).parent / "results" / "annotate_scale.json"
ANNOTATE = [sys.executable, "-m", "chatglm_rlhf.collect.annotate"]
CONSONANTS, VOWELS = "bcdfghklmnprstvz", "aeiou"


def _vocabulary(n: int = 4096) -> list[str]:
    """Pronounceable words of 1-6 letters, 3 on average: with the space, ~4 characters a token."""
    rng = random.Random(0)
    words = []
    for _ in range(n):
        length = rng.choice((1, 2, 2, 3, 3, 3, 4, 4, 5, 6))
        words.append("".join(rng.choice(VOWELS if i % 2 else CONSONANTS) for i in range(length)))
    return words


VOCAB = _vocabulary()


def _text(rng: random.Random, mean_tokens: float) -> tuple[str, int]:
    n = max(1, round(mean_tokens * rng.uniform(0.5, 1.5)))
    return " ".join(rng.choices(VOCAB, k=n)).capitalize() + ".", n


def sample(i: int, k: int) -> tuple[dict, dict[str, int]]:
    """Sample ``i`` with ``k`` responses, and its token counts (history, prompt, responses)."""
    rng = random.Random(i)
    per_turn = HISTORY_TOKENS / HISTORY_TURNS
    history, tokens = [], {"history": 0, "prompt": 0, "response": 0}
    for _ in range(TURNS[i % len(TURNS)]):
        for role, share in (("user", 0.4), ("assistant", 0.6)):
            text, n = _text(rng, per_turn * share)
            history.append({"role": role, "content": text})
            tokens["history"] += n
    prompt, tokens["prompt"] = _text(rng, PROMPT_TOKENS)
    responses = []
    for _ in range(k):
        text, n = _text(rng, RESPONSE_TOKENS)
        responses.append(text)
        tokens["response"] += n
    record = {"id": f"p{i:07d}", "prompt": prompt, "history": history, "responses": responses}
    record.update(category=("open_qa", "coding", "writing", "advice", "math")[i % 5], meta={"synthetic": i})
    return record, tokens


def write_candidates(path: Path, pairs: int) -> dict:
    """Stream samples to ``path`` until they make ``pairs`` pairs (k = 3; k = 2 for the remainder)."""
    triples, rest = divmod(pairs, 3)
    n = triples + rest
    totals = {"history": 0, "prompt": 0, "response": 0, "turns": 0, "responses": 0}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(n):
            record, tokens = sample(i, 3 if i < triples else 2)
            f.write(json.dumps(record) + "\n")
            for key, value in tokens.items():
                totals[key] += value
            totals["turns"] += len(record["history"]) // 2
            totals["responses"] += len(record["responses"])
    tmp.replace(path)
    return {
        "samples": n,
        "pairs": pairs,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "mean_turns": round(totals["turns"] / n, 2),
        "mean_tokens_history": round(totals["history"] / n, 1),
        "mean_tokens_prompt": round(totals["prompt"] / n, 1),
        "mean_tokens_response": round(totals["response"] / totals["responses"], 1),
    }


GNU_TIME = "/usr/bin/time"


def measure(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` as a child process: wall seconds, its peak RSS, and its stdout.

    The peak RSS comes from GNU time, which forks the command from its own small process. ``wait4``
    or RUSAGE_CHILDREN on a child of this (large) process report at least this process's own peak:
    Linux folds the peak of the memory the child had before exec into the child's ``ru_maxrss``.
    """
    rss_file = log.with_suffix(".rss")
    timed = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *cmd] if os.path.exists(GNU_TIME) else cmd
    t0 = time.perf_counter()
    with open(log, "w") as out, open(log.with_suffix(".err"), "w") as err:
        proc = subprocess.run(timed, stdout=out, stderr=err)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.with_suffix(".err").read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    if timed is cmd:  # no GNU time: an upper bound (see above), said so in the result
        rss, how = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "rusage_children_upper_bound"
    else:
        rss, how = int(rss_file.read_text().split()[-1]), "gnu_time"
    return {
        "s": round(wall, 1),
        "peak_rss_mb": round(rss / 1024, 1),
        "rss_from": how,
        "stdout": log.read_text(),
    }


def add_users(db_url: str) -> None:
    """The annotators (cheap password hashes: logins are not what is measured) and an admin."""
    from chatglm_rlhf.collect.annotate import security, service
    from chatglm_rlhf.collect.annotate.db import Database

    security.SCRYPT_N, security.SCRYPT_P = 2**10, 1
    db = Database(db_url)
    with db.write() as s:
        for u in range(ANNOTATORS):
            service.create_user(s, f"ann{u:02d}", load_bench.PASSWORD, "annotator")
        service.create_user(s, "admin", load_bench.PASSWORD, "admin")
    db.dispose()


def _judge(item_id: int, sample_pk: int, pair: tuple[int, int], user: int) -> dict:
    """A noisy annotator's view of a hidden quality per response: ties, slight and clear preferences."""
    qa, qb = (random.Random(sample_pk * 8 + j).random() for j in pair)
    v = qa - qb + random.Random(item_id * 64 + user).gauss(0.0, 0.25)
    choice = 3 if abs(v) < 0.08 else (1 if v > 0.4 else 2) if v > 0 else (5 if v < -0.4 else 4)
    label = "a" if choice < 3 else "b" if choice > 3 else "tie"
    strength = {1: 2, 2: 1, 3: None, 4: 1, 5: 2}[choice]
    scores = {"a": {"helpfulness": 4, "harmlessness": 5, "fluency": 4}}
    scores["b"] = {"helpfulness": 6 - (choice + 1) // 2, "harmlessness": 5, "fluency": 4}
    return {"label": label, "strength": strength, "choice": choice, "scores": scores}


def bulk_annotate(db_url: str, project_name: str = load_bench.PROJECT, batch: int = 5000) -> dict:
    """One judgement per pair, three on every OVERLAP_EVERY-th sample's pairs, in batched inserts; the
    items' counters follow, so the app sees a project part way through (overlap 3)."""
    from sqlalchemy import func, insert, select, text, update

    from chatglm_rlhf.collect.annotate.db import Database
    from chatglm_rlhf.collect.annotate.models import Annotation, Assignment, Item, Project, User

    t0 = time.perf_counter()
    db = Database(db_url)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with db.write() as s:
        project = s.scalars(select(Project).where(Project.name == project_name)).one()
        users = [s.scalar(select(User.id).where(User.username == f"ann{u:02d}")) for u in range(ANNOTATORS)]
        last_id, n, sample_no, last_sample = 0, 0, -1, None
        while True:
            rows = s.execute(
                select(Item.id, Item.sample_pk, Item.idx_a, Item.idx_b)
                .where(Item.project_id == project.id, Item.id > last_id)
                .order_by(Item.id)
                .limit(batch)
            ).all()
            if not rows:
                break
            assignments, annotations = [], []
            for item_id, sample_pk, a, b in rows:
                if sample_pk != last_sample:
                    sample_no, last_sample = sample_no + 1, sample_pk
                who = [sample_no % ANNOTATORS]
                if sample_no % OVERLAP_EVERY == 0:
                    who += [(sample_no + 7) % ANNOTATORS, (sample_no + 13) % ANNOTATORS]
                for u in who:
                    n += 1
                    when = start + timedelta(seconds=n)
                    common = {"id": n, "item_id": item_id, "user_id": users[u], "project_id": project.id}
                    swapped = (item_id + u) % 2 == 1
                    assignments.append({**common, "swapped": swapped, "status": "done", "assigned_at": when})
                    annotations.append(
                        {**common, "assignment_id": n, "idempotency_key": f"bulk-{n:09d}", "swapped": swapped}
                        | {"rationale": "", "flags": [], "skipped": False, "created_at": when}
                        | {
                            "time_spent_ms": 5000 + (n * 7919) % 55000,
                            **_judge(item_id, sample_pk, (a, b), u),
                        }
                    )
            s.execute(insert(Assignment), assignments)
            s.execute(insert(Annotation), annotations)
            last_id = rows[-1][0]
        active = (Assignment.item_id == Item.id) & (Assignment.status != "skipped")
        count = select(func.count(Assignment.id)).where(active).correlate(Item).scalar_subquery()
        s.execute(update(Item).where(Item.project_id == project.id).values(n_active=count))
        if not db.is_sqlite:  # explicit ids: move the sequences past them
            for table in ("assignments", "annotations"):
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n})"))
    if not db.is_sqlite:  # what autovacuum does soon after a bulk change: statistics, visibility map
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    db.dispose()
    return {"annotations": n, "s": round(time.perf_counter() - t0, 1)}


def live(db_url: str, per_annotator: int, think_s: float) -> dict:
    """20 annotators through the pages of a real server: item page (next) and form post (submit) ms."""
    from chatglm_rlhf.collect.annotate.process import start_server

    stats = load_bench.new_stats()
    server = start_server(db_url)
    try:
        cpu0, t0 = load_bench._cpu_seconds(server.proc.pid), time.perf_counter()
        users = [f"ann{u:02d}" for u in range(ANNOTATORS)]
        asyncio.run(load_bench._all(server.url, users, per_annotator, 0, stats, think_s=think_s))
        wall, cpu = time.perf_counter() - t0, load_bench._cpu_seconds(server.proc.pid) - cpu0
        rss = _vm_hwm_mb(server.proc.pid)
    finally:
        server.stop()
    if stats["errors"]:  # the server's own account of a 500: its traceback's last lines
        said = [ln for ln in server.lines if "Error" in ln or "error" in ln][-10:]
        raise RuntimeError(f"live phase: {stats['errors'][:5]}; server: " + "\n".join(said))
    pct, n = load_bench._pct, len(stats["acknowledged"])
    return {
        "think_s": think_s,
        "submissions": n,
        "next_p50_ms": round(pct(stats["next_ms"], 50), 1),
        "next_p95_ms": round(pct(stats["next_ms"], 95), 1),
        "submit_p50_ms": round(pct(stats["submit_ms"], 50), 1),
        "submit_p95_ms": round(pct(stats["submit_ms"], 95), 1),
        "submissions_per_s": round(n / wall, 1),
        "server_cpu_ms_per_submission": round(cpu * 1000 / max(1, n), 1),
        "server_peak_rss_mb": rss,
    }


def _vm_hwm_mb(pid: int) -> float | None:
    """A live process's peak RSS (Linux), read before it is stopped."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def run_backend(db_url: str, candidates: Path, work: Path, args: argparse.Namespace) -> dict:
    """Every measurement on one fresh database (``db_url``) loaded from ``candidates``."""
    db = ["--db", db_url]
    out: dict = {}
    load = measure(
        [*ANNOTATE, "load", str(candidates), "--project", load_bench.PROJECT, "--overlap", "3", *db],
        work / "load.log",
    )
    out["load"] = {k: load[k] for k in ("s", "peak_rss_mb", "rss_from")} | {"db_mb": _db_mb(db_url)}
    add_users(db_url)
    out["bulk_annotate"] = bulk_annotate(db_url)
    if args.live:
        out["live_paced"] = live(db_url, args.per_annotator, args.think_ms / 1000)
        if args.burst_per_annotator:  # 0: no flat-out phase
            out["live_flat_out"] = live(db_url, args.burst_per_annotator, 0.0)
    stats = measure([*ANNOTATE, "stats", "--project", load_bench.PROJECT, "--json", *db], work / "stats.log")
    st = json.loads(stats.pop("stdout"))
    keys = (
        "done",
        "items",
        "complete_items",
        "alpha_label",
        "alpha_choice",
        "kappa_mean",
        "cycles",
        "triangles_checked",
    )
    out["stats"] = {**stats, **{k: st[k] for k in keys}}
    export_path = work / "export.jsonl"
    export = measure(
        [*ANNOTATE, "export", "--project", load_bench.PROJECT, "-o", str(export_path), *db],
        work / "export.log",
    )
    export.pop("stdout")
    out["export"] = {
        **export,
        "records": _lines(export_path),
        "mb": round(export_path.stat().st_size / 2**20, 1),
    }
    filtered = work / "filtered.jsonl"
    flt = measure(
        [sys.executable, "-m", "chatglm_rlhf.cli.main", "filter", str(export_path), "-o", str(filtered)],
        work / "filter.log",
    )
    flt.pop("stdout")
    out["filter"] = {**flt, "kept_pairs": _lines(filtered)}
    return out


def _db_mb(db_url: str) -> float:
    """The database's size on disk after the load."""
    from sqlalchemy import create_engine, text

    if "://" not in db_url:
        return round(
            sum(p.stat().st_size for p in Path(db_url).parent.glob(Path(db_url).name + "*")) / 2**20, 1
        )
    engine = create_engine(db_url)
    with engine.connect() as conn:
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
    engine.dispose()
    return round(size / 2**20, 1)


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


@contextmanager
def database(backend: str, work: Path, pg_url: str | None):
    """A fresh SQLite file under ``work``, or a scratch PostgreSQL database (dropped afterwards)."""
    if backend == "sqlite":
        path = work / "scale.db"
        for p in work.glob("scale.db*"):
            p.unlink()
        yield str(path)
        for p in work.glob("scale.db*"):
            p.unlink()
        return
    with load_bench.fresh_postgres(pg_url) as url:
        yield url


def run_scale(scale: float, backends: list[str], work: Path, args: argparse.Namespace) -> list[dict]:
    pairs = max(3, round(PAPER_PAIRS * scale))
    candidates = work / f"candidates_{pairs}.jsonl"
    t0 = time.perf_counter()
    shape = write_candidates(candidates, pairs)
    shape["write_s"] = round(time.perf_counter() - t0, 1)
    print(f"scale {scale:g}: {pairs} pairs, {shape['samples']} samples, {shape['file_mb']} MB", flush=True)
    results = []
    for backend in backends:
        with database(backend, work, args.pg_url) as url:
            result = {"scale": scale, "backend": backend, **shape, **run_backend(url, candidates, work, args)}
        result["load_average_1m"] = round(os.getloadavg()[0], 1)  # other work on the machine, at the end
        results.append(result)
        print(format_table([result], header=False), flush=True)
    if not args.keep:
        candidates.unlink()
    return results


COLUMNS = [
    ("scale", ("scale",)), ("backend", ("backend",)), ("pairs", ("pairs",)),
    ("load s", ("load", "s")), ("load MB", ("load", "peak_rss_mb")),
    ("next p50/p95 ms", ("live_paced", "next_p50_ms", "next_p95_ms")),
    ("submit p50/p95 ms", ("live_paced", "submit_p50_ms", "submit_p95_ms")),
    ("flat-out next/submit p95", ("live_flat_out", "next_p95_ms", "submit_p95_ms")),
    ("server CPU ms/subm", ("live_paced", "server_cpu_ms_per_submission")),
    ("stats s", ("stats", "s")), ("stats MB", ("stats", "peak_rss_mb")),
    ("export s", ("export", "s")), ("export MB", ("export", "peak_rss_mb")),
    ("filter s", ("filter", "s")), ("filter MB", ("filter", "peak_rss_mb")), ("load avg", ("load_average_1m",)),
]  # fmt: skip


def _cell(result: dict, path: tuple[str, ...]) -> str:
    if len(path) == 1:
        return str(result.get(path[0], ""))
    part = result.get(path[0], {})
    return "/".join(str(part.get(k, "")) for k in path[1:])


def format_table(results: list[dict], header: bool = True) -> str:
    lines = []
    if header:
        lines.append(" | ".join(title for title, _ in COLUMNS))
    for r in results:
        lines.append(" | ".join(_cell(r, path).rjust(len(title)) for title, path in COLUMNS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's 221,866 pairs")
    p.add_argument("--growth", type=float, default=8.0, help="also run at scale / this (0: not)")
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    p.add_argument(
        "--pg-url", default=load_bench.pg_url_from_env(), help="PostgreSQL server for scratch databases"
    )
    p.add_argument("--per-annotator", type=int, default=100, help="paced judgements per annotator")
    p.add_argument(
        "--think-ms", type=float, default=500.0, help="mean think time between an annotator's items"
    )
    p.add_argument(
        "--burst-per-annotator", type=int, default=25, help="judgements per annotator flat out (0: none)"
    )
    p.add_argument("--no-live", dest="live", action="store_false", help="only the commands, no annotators")
    p.add_argument("--workdir", default="/tmp/annotate_scale", help="files and the SQLite database go here")
    p.add_argument("--keep", action="store_true", help="keep the candidates file")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    if "postgresql" in backends and not args.pg_url:
        print(
            "PostgreSQL: skipped (no --pg-url, $CHATGLM_RLHF_TEST_PG_URL or " + load_bench.PG_URL_FILE + ")"
        )
        backends.remove("postgresql")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    scales = ([args.scale / args.growth] if args.growth else []) + [args.scale]
    print(format_table([]), flush=True)
    results = [r for scale in scales for r in run_scale(scale, backends, work, args)]
    print("\n" + format_table(results))
    machine = {"cpus": os.cpu_count(), "load_average_1m_end": round(os.getloadavg()[0], 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"machine": machine, "paper_pairs": PAPER_PAIRS, "results": results}, indent=2) + "\n"
    )
    print(f"wrote {out}")
    for f in ("export.jsonl", "filtered.jsonl", "filtered.dropped.jsonl", "filtered.summary.json"):
        (work / f).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
