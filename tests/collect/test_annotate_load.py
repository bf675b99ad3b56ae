"""Load and crash tests against a real ``annotate serve`` process on 127.0.0.1.

The load test (marked ``load``) runs benchmarks/annotate_load.py: 20 concurrent simulated annotators x
50 acknowledged judgements, some forms posted twice, the server SIGKILLed three times while posts are
in flight and restarted; then a last SIGKILL, a database check and a restart. It runs on SQLite, and
on PostgreSQL when a server is known ($CHATGLM_RLHF_TEST_PG_URL or the URL file written by
scripts/ci_annotate_services.sh); otherwise that case skips with the reason.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _check(result: dict, tmp_path: Path, bench) -> None:
    (tmp_path / "annotate_load.json").write_text(json.dumps(result, indent=2))
    print("\n" + bench.format_table([result]))
    assert bench.problems(result) == []
    # Three kills, each with a post in flight.
    assert [k["posts_in_flight"] > 0 for k in result["kills"]] == [True] * 3
    assert result["acknowledged"] == 1000 and result["lost"] == 0 and result["duplicated"] == 0
    # What no client saw acknowledged: at most one per client and kill, and none from the clients
    # that post again (their idempotency key makes the repeat answer with the stored row).
    assert result["unacknowledged_rows"] <= 20 * 3 and result["unacknowledged_rows_reposting"] == 0
    assert result["rows"] == result["rows_after_restart"] == 1000 + result["unacknowledged_rows"]
    assert result["inconsistent_items"] == 0 and result["users_with_two_open_items"] == 0
    assert result["duplicate_posts"] >= 100  # every 10th form was posted twice, and made no row
    assert result["retries"] > 0  # the clients did meet the dead server
    assert result["submit_p95_ms"] >= result["submit_p50_ms"] > 0


@contextmanager
def _database(backend: str, tmp_path: Path, bench, helpers) -> Iterator[str]:
    """A fresh SQLite file, or a scratch database on the known PostgreSQL server (else skip, saying why)."""
    if backend == "sqlite":
        yield str(tmp_path / "load.db")
        return
    with helpers.scratch_postgres(bench) as db_url:
        yield db_url


@pytest.mark.load
@pytest.mark.faults
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_load_with_three_kills(backend, tmp_path, repo_script, helpers):
    """20 annotators x 50 acknowledged judgements; the server SIGKILLed 3 times mid-flight."""
    bench = repo_script("benchmarks/annotate_load.py")
    with _database(backend, tmp_path, bench, helpers) as db_url:
        _check(bench.run(db_url, kills=3), tmp_path, bench)


@pytest.mark.faults
def test_sigkill_during_submissions_loses_nothing_acknowledged(tmp_path, repo_script):
    """Kill the server while 6 annotators are mid-flight, restart it, and let them finish."""
    bench = repo_script("benchmarks/annotate_load.py")
    from chatglm_rlhf.collect.annotate.process import start_server

    db_url = str(tmp_path / "crash.db")
    bench.setup(db_url, annotators=6, per_annotator=12, overlap=2, workdir=tmp_path)
    bench.RETRY_S = 0.3  # the killed server comes back on another port: clients of the old one give up
    stats = bench.new_stats()
    users = [f"ann{u:02d}" for u in range(6)]
    server = start_server(db_url)

    async def until_killed() -> None:
        tasks = [asyncio.create_task(bench.annotator(server.url, u, 12, 0, stats)) for u in users]
        while len(stats["acknowledged"]) < 20:  # bounded by the tasks' own 12 submissions each
            await asyncio.sleep(0.01)
            if all(t.done() for t in tasks):
                break
        server.kill()
        await asyncio.gather(*tasks, return_exceptions=True)  # in-flight requests fail: that is the test

    asyncio.run(until_killed())
    first = bench.check_db(db_url, stats["acknowledged"])
    assert len(stats["acknowledged"]) >= 20
    assert first["lost"] == 0 and first["duplicated"] == 0
    # A commit whose response never reached the client may exist: at most one per annotator.
    assert first["unacknowledged_rows"] <= len(users)
    restarted = start_server(db_url)
    try:
        stats["errors"].clear()
        remaining = 12 - len(stats["acknowledged"]) // len(users)
        asyncio.run(bench._all(restarted.url, users, max(1, remaining // 2), 0, stats))
    finally:
        restarted.kill()
    final = bench.check_db(db_url, stats["acknowledged"])
    assert stats["errors"] == [] and final["lost"] == 0 and final["duplicated"] == 0
    assert final["rows"] >= first["rows"] + len(users)
