"""The writer of ended calls (``qa_pipeline.store.writer``), on both backends: every call
handed in is written (transcript, call row, utterance rows, result with verdict and finding
rows) or counted as dropped; a store down at first is written once it is back; the same
call written again replaces its rows."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from qa_pipeline.messages import Scorecard
from qa_pipeline.privacy import default_redactor
from qa_pipeline.rules import RulePack, load_pack, score_transcript
from qa_pipeline.store import Store
from qa_pipeline.store.writer import LiveRun, StoreWriter
from qa_pipeline.testing import make_call
from qa_pipeline.transcript import transcript_to_dict

MOBILE = "13912345678"


@pytest.fixture(scope="module")
def pack() -> RulePack:
    return load_pack()


def calls(pack: RulePack, n: int, seed: int = 3) -> list[tuple[dict[str, Any], Scorecard]]:
    """Scored calls as a service hands them to the writer; the first one's caller number
    is in its metadata, unredacted (the writer redacts what reaches the store)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = make_call(i, rng, rng.randrange(3, 12))
        doc = transcript_to_dict(t)
        if i == 0:
            doc["call"]["metadata"]["caller"] = MOBILE
        out.append((doc, score_transcript(pack, t)))
    return out


def writer(target: str, pack: RulePack, **kw: Any) -> StoreWriter:
    kw.setdefault("backoff_s", (0.05, 0.3))
    return StoreWriter(
        target,
        LiveRun.for_pack(pack, "test"),
        settings={"asr": {}},
        redactor=default_redactor(),
        registry=CollectorRegistry(),
        **kw,
    )


def wait_for(pred: Any, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while not pred():
        assert time.monotonic() < deadline, "not within the time limit"
        time.sleep(0.02)


def dropped_metric(w: StoreWriter, reason: str) -> float | None:
    return w.metrics.registry.get_sample_value("qa_store_dropped_total", {"reason": reason})


def stored(target: str, run_id: str) -> dict[str, Any]:
    with Store(target, readonly=True) as s:
        q = s.execute
        return {
            "results": q(
                "SELECT call_id, score, complete FROM results WHERE run_id = ? ORDER BY call_id",
                (run_id,),
            ).fetchall(),
            "verdicts": q("SELECT COUNT(*) FROM verdicts WHERE run_id = ?", (run_id,)).fetchone()[
                0
            ],
            "findings": q("SELECT COUNT(*) FROM findings WHERE run_id = ?", (run_id,)).fetchone()[
                0
            ],
            "utterances": dict(
                q("SELECT call_id, COUNT(*) FROM utterances GROUP BY call_id").fetchall()
            ),
            "calls": [r[0] for r in q("SELECT call FROM calls ORDER BY call_id").fetchall()],
            "transcripts": q("SELECT COUNT(*) FROM transcripts").fetchone()[0],
            "runs": q("SELECT run_id, role FROM runs").fetchall(),
        }


def check_all_written(target: str, pack: RulePack, items: list[tuple[dict[str, Any], Any]]) -> None:
    run = LiveRun.for_pack(pack, "test")
    got = stored(target, run.run_id)
    want = sorted((d["call"]["call_id"], round(c.score, 2), int(c.complete)) for d, c in items)
    assert [(r[0], r[1], r[2]) for r in got["results"]] == want
    assert got["verdicts"] == sum(len(c.verdicts) for _, c in items)
    assert got["findings"] == sum(len(c.findings) for _, c in items)
    assert got["utterances"] == {d["call"]["call_id"]: len(d["utterances"]) for d, _ in items}
    assert got["transcripts"] == len(items)
    assert [tuple(r) for r in got["runs"]] == [(run.run_id, "active")]
    assert all(MOBILE not in c for c in got["calls"])  # redacted before it was stored


def test_every_call_is_written_once_and_again_replaces_it(store_url: str, pack: RulePack) -> None:
    items = calls(pack, 6)
    w = writer(store_url, pack, batch_max=4).start()
    for doc, card in items:
        assert w.submit(json.loads(json.dumps(doc)), card)
    assert w.flush(30)
    check_all_written(store_url, pack, items)
    # the same calls again (an evaluator replaying them after a rebalance): no new rows
    for doc, card in items:
        assert w.submit(json.loads(json.dumps(doc)), card)
    counts = w.close(30)
    assert counts.written == 12 and counts.dropped_total == 0 and counts.batches >= 3
    check_all_written(store_url, pack, items)
    # what the current-score query makes of them: every complete call, once
    with Store(store_url, readonly=True) as s:
        current = s.current_results()
    assert sorted(r["call_id"] for r in current) == sorted(
        d["call"]["call_id"] for d, c in items if c.complete
    )


def test_queue_overflow_is_counted_and_what_was_accepted_is_written(
    tmp_path: Path, pack: RulePack, caplog: pytest.LogCaptureFixture
) -> None:
    target = str(tmp_path / "qa-store.sqlite")
    items = calls(pack, 5)
    w = writer(target, pack, queue_max=2)  # not started yet: nothing leaves the queue
    accepted = [w.submit(doc, card) for doc, card in items]
    assert accepted == [True, True, False, False, False]
    assert w.counts.dropped == {"queue_full": 3}
    assert dropped_metric(w, "queue_full") == 3
    assert f"store {target}" in caplog.text and "queue_full" in caplog.text
    w.start()
    counts = w.close(30)
    assert (counts.submitted, counts.written, counts.dropped_total) == (5, 2, 3)
    check_all_written(target, pack, items[:2])


def test_sqlite_store_that_cannot_be_opened_is_written_once_it_can(
    tmp_path: Path, pack: RulePack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "qa_pipeline.store.writer")
    blocker = tmp_path / "stores"
    blocker.write_text("a file where the store's directory should be")
    target = str(blocker / "qa-store.sqlite")
    items = calls(pack, 3)
    w = writer(target, pack).start()
    t0 = time.monotonic()
    for doc, card in items:
        assert w.submit(doc, card)  # never blocks, whatever the store does
    assert time.monotonic() - t0 < 0.5
    wait_for(lambda: not w.up)
    assert w.flush(5) is False  # returns at once while the store is down
    assert f"store {target}: cannot write" in caplog.text
    assert w.counts.failed_attempts >= 1
    blocker.unlink()
    blocker.mkdir()
    wait_for(lambda: w.up and w.pending == 0)  # retried with backoff (here 0.05-0.3 s)
    counts = w.close(10)
    assert counts.written == 3 and counts.dropped_total == 0
    assert "writing again" in caplog.text
    check_all_written(target, pack, items)


def test_postgres_down_at_first_then_connections_killed(pg_server: Any, pack: RulePack) -> None:
    """A database that does not exist yet (the server refuses the connection), then the
    writer's connection killed by the server between two batches: both retried, nothing
    lost."""
    import psycopg

    name = f"qa_test_{uuid.uuid4().hex[:12]}"
    target = pg_server(name)
    items = calls(pack, 4)
    w = writer(target, pack).start()
    try:
        for doc, card in items[:2]:
            assert w.submit(doc, card)
        wait_for(lambda: not w.up)
        assert w.pending == 2
        with psycopg.connect(pg_server(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
            wait_for(lambda: w.up and w.pending == 0)
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        for doc, card in items[2:]:
            assert w.submit(doc, card)
        wait_for(lambda: w.up and w.pending == 0)
        counts = w.close(10)
        assert counts.written == 4 and counts.dropped_total == 0
        assert counts.failed_attempts >= 2
        check_all_written(target, pack, items)
    finally:
        w.close(1)
        with psycopg.connect(pg_server(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_close_with_the_store_down_counts_what_is_left(tmp_path: Path, pack: RulePack) -> None:
    blocker = tmp_path / "stores"
    blocker.write_text("not a directory")
    w = writer(str(blocker / "s.sqlite"), pack).start()
    for doc, card in calls(pack, 3):
        w.submit(doc, card)
    counts = w.close(0.5)
    assert counts.written == 0 and counts.dropped == {"shutdown": 3}
    assert dropped_metric(w, "shutdown") == 3


def test_a_call_the_store_refuses_is_dropped_alone(
    store_url: str, pack: RulePack, caplog: pytest.LogCaptureFixture
) -> None:
    items = calls(pack, 3)
    bad = items[1][0]
    bad["utterances"][0]["start"] = {"not": "a time"}  # no database column takes this
    w = writer(store_url, pack)
    for doc, card in items:
        assert w.submit(doc, card)
    counts = w.start().close(30)
    assert counts.written == 2 and counts.dropped == {"rejected": 1}
    assert f"refused call {bad['call']['call_id']}" in caplog.text
    check_all_written(store_url, pack, [items[0], items[2]])


def test_writers_at_once_on_the_same_calls(store_url: str, pack: RulePack) -> None:
    """Three writers (three processes' worth: each its own connection) writing the same
    calls at the same time, in batches of different sizes and orders: each call once."""
    items = calls(pack, 12, seed=5)
    writers = [writer(store_url, pack, batch_max=b) for b in (3, 5, 12)]
    for k, w in enumerate(writers):
        order = items[k:] + items[:k]
        for doc, card in order:
            assert w.submit(json.loads(json.dumps(doc)), card)
    for w in writers:
        w.start()
    for w in writers:
        counts = w.close(60)
        assert counts.written == 12 and counts.dropped_total == 0, counts
    check_all_written(store_url, pack, items)
