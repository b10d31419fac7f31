"""The dashboard's review-queue scan (:func:`qa_pipeline.review.repo.scan`) on a big store.

The dashboard scans the store when it starts and every 60 s after (``review_scan_s``), on
its one store connection (the one the review routes and acknowledgements wait for). Fills a
store with the history tests' five generated calls and copies them to ``CALLS`` (20,000 by
default: each with its scorecard JSON and ~38 verdict rows), then times:

* the first scan (an empty queue: every call due for review is queued, ~3 in 5),
* a periodic scan with nothing new (the steady state, every 60 s),
* a periodic scan after 100 new calls were scored,

the full scan and the incremental one (``since``: calls with a result since the mark taken
before the last scan, less the dashboard's overlap) side by side, best of 3 (the scans that queue nothing). ::

    PYTHONPATH=. python benchmarks/bench_review_scan.py out/bench-scan.sqlite [CALLS]
    PYTHONPATH=. python benchmarks/bench_review_scan.py postgresql://postgres@127.0.0.1:55432/db

The store must be new (an empty PostgreSQL database, a SQLite file not there).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "dashboard"))

from history_data import fill_store  # type: ignore[import-not-found]  # noqa: E402

from qa_pipeline.dashboard.review_api import SCAN_OVERLAP_S  # noqa: E402
from qa_pipeline.review import repo  # noqa: E402
from qa_pipeline.store import Store  # noqa: E402

CALLS = 20_000
BELOW = 60.0  # the dashboard's default review_below


def copy_calls(s: Store, first: int, last: int, created_at: float | None = None) -> None:
    """Copies ``first``..``last - 1`` of the five filled calls (ids ``h-N-<copy>``); their
    results created at ``created_at`` (``None``: as the originals)."""
    s.execute("CREATE TEMP TABLE IF NOT EXISTS n (i INTEGER)")
    s.execute("DELETE FROM n")
    s.executemany("INSERT INTO n VALUES (?)", [(i,) for i in range(first, last)])
    s.execute(
        "INSERT INTO calls (call_id, audio_sha256, settings_hash, source, started_at, "
        "agent_id, call, updated_at, team, direction, started_epoch, duration_s) "
        "SELECT c.call_id || '-' || n.i, c.audio_sha256, c.settings_hash, c.source, "
        "c.started_at, c.agent_id || (n.i % 50), c.call, c.updated_at, c.team, "
        "c.direction, c.started_epoch - n.i * 864, c.duration_s FROM calls c, n "
        "WHERE c.call_id NOT LIKE 'h-%-%'"
    )
    # results written over the days before (as the calls started), or at ``created_at``
    created = "?" if created_at is not None else "r.created_at - n.i * 864"
    s.execute(
        "INSERT INTO results SELECT r.run_id, r.call_id || '-' || n.i, r.transcript_key, "
        "r.status, r.error, r.score - (n.i % 30), r.grade, r.failed, r.failed_rules, "
        f"r.findings, r.verdicts, {created}, r.complete, r.review FROM results r, n "
        "WHERE r.call_id NOT LIKE 'h-%-%'",
        [created_at] if created_at is not None else [],
    )
    s.execute(
        "INSERT INTO verdicts SELECT v.run_id, v.call_id || '-' || n.i, v.rule_id, "
        "v.verdict, v.severity, v.deduction, v.pending_deduction FROM verdicts v, n "
        "WHERE v.call_id NOT LIKE 'h-%-%'"
    )
    s.commit()


def build(url: str, calls: int) -> None:
    fill_store(url)
    with Store(url) as s:
        copy_calls(s, 1, calls // 5)
        if s.dialect == "postgres":  # planner statistics, as autovacuum would gather
            s.execute("ANALYZE")
            s.commit()  # (the store runs it in a transaction: rolled back at close else)
        n = s.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        r = s.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        print(f"{s.dialect}: {n:,} calls, {r:,} results")  # noqa: T201


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000, out


def best(fn: Callable[[], Any], reps: int = 3) -> float:
    return min(timed(fn)[0] for _ in range(reps))


def main(url: str, calls: int = CALLS) -> None:
    build(url, calls)
    with Store(url) as s:
        ms, added = timed(lambda: repo.scan(s, below=BELOW))
        print(f"first scan (empty queue)      {ms:8.0f} ms  {len(added):,} queued")  # noqa: T201
        mark = repo.scan_mark(s)
        assert mark is not None
        since = mark - SCAN_OVERLAP_S  # as the dashboard's periodic scan
        ms = best(lambda: repo.scan(s, below=BELOW))
        print(f"periodic, nothing new, full   {ms:8.0f} ms")  # noqa: T201
        ms = best(lambda: repo.scan(s, below=BELOW, since=since))
        print(f"periodic, nothing new, since  {ms:8.0f} ms")  # noqa: T201
        copy_calls(s, calls // 5, calls // 5 + 20, created_at=time.time())  # 100 new calls
        ms, added = timed(lambda: repo.scan(s, below=BELOW, since=since))
        print(f"periodic, 100 new, since      {ms:8.0f} ms  {len(added):,} queued")  # noqa: T201
        ms = best(lambda: repo.scan(s, below=BELOW))
        print(f"periodic, after them, full    {ms:8.0f} ms")  # noqa: T201


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else CALLS)
