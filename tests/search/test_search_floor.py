"""A floor under search speed, in the default run: 3,000 generated calls (~45,000
utterances, the benchmark's generator and bulk loader), frequent and rare terms with and
without filters, both backends: every search under a generous bound and the plans on the
index. ``benchmarks/bench_search.py`` measures the 100,000-call figures."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from qa_pipeline.store import Store
from qa_pipeline.store import search as S

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_search.py"
CALLS = 3000
BOUND_MS = 1000  # generous: ~20 ms when the machine is idle (30x fewer calls than the benchmark)


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_search", BENCH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CASES = [
    ("您好", S.Filters()),
    ("好", S.Filters()),
    ("媒体曝光", S.Filters()),
    ("诈骗", S.Filters(direction="inbound")),
    ("您好", S.Filters(agent="A007")),
    ("投诉", S.Filters(team="T03", min_score=90)),
    ("非常抱歉", S.Filters(rule="EMPATHY", verdict="failed")),
]


def test_search_floor(store_url: str) -> None:
    bench = _bench()
    if "://" in store_url:
        bench.build_postgres(store_url, CALLS)
    else:
        bench.build_sqlite(Path(store_url), CALLS)
    with Store(store_url) as db:
        worst = 0.0
        for terms, filters in CASES:
            page = S.search(db, terms, filters)  # warm
            assert page.total_calls >= len(page.hits)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                S.search(db, terms, filters)
                times.append((time.perf_counter() - t0) * 1000)
            worst = max(worst, sorted(times)[1])
        assert worst < BOUND_MS, f"median search {worst:.0f} ms on {CALLS} calls"
        assert S.search(db, "您好").total_calls > CALLS * 0.8
        plan = S.explain(db, "媒体曝光")
        if db.dialect == "sqlite":
            assert "VIRTUAL TABLE INDEX" in plan and "SCAN search_calls" not in plan, plan
        else:
            assert "search_calls_tsv" in plan, plan
