"""The dashboard's history queries on a large store (``qa_pipeline.dashboard.history``).

Fills a store with the history tests' five generated calls, copies them to ``CALLS``
calls (100,000 by default, each with its ~38 verdict rows: 3.84 M; starts spread over 200
days, 50 agents a team), then times each query (best of 3): the list's first page (plain,
one agent, one rule failed, a supervisor's scope), the week trends of scores and of
violations over all time, a call's detail. On PostgreSQL the planner's statistics are
gathered (``ANALYZE``, committed) before the timings, as autovacuum would. ::

    PYTHONPATH=. python benchmarks/bench_history.py out/bench-history.sqlite [CALLS]
    PYTHONPATH=. python benchmarks/bench_history.py postgresql://postgres@127.0.0.1:55400/db

The store must be new (an empty PostgreSQL database, a SQLite file not there).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "dashboard"))

from history_data import fill_store  # type: ignore[import-not-found]  # noqa: E402

from qa_pipeline.dashboard.history import (  # noqa: E402
    CallFilter,
    Scope,
    TrendQuery,
    call_detail,
    list_calls,
    score_trend,
    violation_trend,
)
from qa_pipeline.store import Store  # noqa: E402

CALLS = 100_000  # the five generated calls, copied CALLS // 5 times


def build(url: str, copies: int) -> None:
    fill_store(url)
    with Store(url) as s:
        s.execute("CREATE TEMP TABLE n (i INTEGER)")
        s.executemany("INSERT INTO n VALUES (?)", [(i,) for i in range(1, copies)])
        s.execute(
            "INSERT INTO calls (call_id, audio_sha256, settings_hash, source, started_at, "
            "agent_id, call, updated_at, team, direction, started_epoch, duration_s) "
            "SELECT c.call_id || '-' || n.i, c.audio_sha256, c.settings_hash, c.source, "
            "c.started_at, c.agent_id || (n.i % 50), c.call, c.updated_at, c.team, "
            "c.direction, c.started_epoch - n.i * 864, c.duration_s FROM calls c, n"
        )
        s.execute(
            "INSERT INTO results SELECT r.run_id, r.call_id || '-' || n.i, r.transcript_key, "
            "r.status, r.error, r.score - (n.i % 30), r.grade, r.failed, r.failed_rules, "
            "r.findings, r.verdicts, r.created_at, r.complete, r.review FROM results r, n"
        )
        s.execute(
            "INSERT INTO verdicts SELECT v.run_id, v.call_id || '-' || n.i, v.rule_id, "
            "v.verdict, v.severity, v.deduction, v.pending_deduction FROM verdicts v, n"
        )
        s.commit()
        if s.dialect == "postgres":  # planner statistics, as autovacuum would gather
            s.execute("ANALYZE")
            s.commit()  # (the store runs it in a transaction: rolled back at close else)
        calls = s.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        verdicts = s.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
        print(f"{s.dialect}: {calls:,} calls, {verdicts:,} verdict rows")  # noqa: T201


def main(url: str, calls: int = CALLS) -> None:
    copies = max(1, calls // 5)
    build(url, copies)
    detail = f"h-5-{min(777, copies - 1)}" if copies > 1 else "h-5"  # a copy, if any
    sup = Scope(teams=frozenset({"north"}), team_agents=frozenset({"A1"}))
    with Store(url, readonly=True) as s:
        for name, fn in (
            ("list, first page", lambda: list_calls(s, CallFilter(), Scope())),
            ("list, one agent", lambda: list_calls(s, CallFilter(agent_id="A17"), Scope())),
            ("list, rule failed", lambda: list_calls(s, CallFilter(rule_id="BAN-POLICY"), Scope())),
            ("list, supervisor", lambda: list_calls(s, CallFilter(), sup)),
            ("score trend, weeks", lambda: score_trend(s, TrendQuery(bucket="week"), Scope())),
            ("violations, weeks", lambda: violation_trend(s, TrendQuery(bucket="week"), Scope())),
            ("a call's detail", lambda: call_detail(s, detail, Scope(), text=True)),
        ):
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            print(f"{name:22s} {best * 1000:8.0f} ms")  # noqa: T201


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else CALLS)
