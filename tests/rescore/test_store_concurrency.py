"""Many writers and readers at once on PostgreSQL: processes that each store and score
their own calls (transcript, utterances, result, verdicts, findings: one transaction per
call) while others read the current scores; every row arrives, nobody fails."""

from __future__ import annotations

import multiprocessing
import random
import time
from typing import Any

from qa_pipeline.errors import QAError
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.store import Store
from qa_pipeline.store.migrate import migrations
from qa_pipeline.transcript import transcript_to_dict

from .synth import make_call

WRITERS, CALLS_EACH, READERS = 4, 50, 2


def _write(url: str, w: int, out: Any) -> None:
    try:
        pack = load_pack()
        rng = random.Random(w)
        n_findings = 0
        with Store(url) as st:  # all open a fresh database at once: migrations run once
            h = st.put_settings({"asr": {"model": "x"}})
            st.commit()
            for i in range(CALLS_EACH):
                t = make_call(w * 1000 + i, rng, agent_old=i % 3 == 0)
                card = score_transcript(pack, t)
                n_findings += len(card.findings)
                doc = transcript_to_dict(t)
                stored = st.put_transcript(doc, audio_sha=f"w{w}-{i}", settings_hash_=h,
                                           commit=False)  # fmt: skip
                st.record_score(t, card, pack, key=stored.transcript_key)  # commits both
        out.put(("ok", w, n_findings))
    except Exception as e:  # reported to the test, not lost in a child
        out.put(("error", w, f"{type(e).__name__}: {e}"))


def _read(url: str, stop: Any, out: Any) -> None:
    reads = 0
    try:
        while True:  # the writers' first open creates the schema; a reader waits for it
            try:
                st = Store(url, readonly=True)
                break
            except QAError:
                time.sleep(0.02)
        with st:
            while not stop.is_set():
                rows = st.current_results()
                assert all(r["score"] is not None for r in rows)
                st.execute("SELECT count(*) FROM verdicts WHERE verdict = 'failed'").fetchone()
                reads += 1
        out.put(("ok", "reader", reads))
    except Exception as e:
        out.put(("error", "reader", f"{type(e).__name__}: {e}"))


def test_many_writers_and_readers_at_once(pg_database: str) -> None:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    stop = ctx.Event()
    t0 = time.perf_counter()
    writers = [ctx.Process(target=_write, args=(pg_database, w, out)) for w in range(WRITERS)]
    readers = [ctx.Process(target=_read, args=(pg_database, stop, out)) for _ in range(READERS)]
    for p in writers + readers:
        p.start()
    results = [out.get(timeout=60) for _ in writers]
    stop.set()
    results += [out.get(timeout=30) for _ in readers]
    for p in writers + readers:
        p.join(timeout=30)
    elapsed = time.perf_counter() - t0
    errors = [r for r in results if r[0] == "error"]
    assert not errors, errors
    assert all(r[2] > 0 for r in results if r[1] == "reader")  # the readers did read
    n = WRITERS * CALLS_EACH
    findings = sum(r[2] for r in results if r[1] != "reader")
    with Store(pg_database) as st:
        counts = {
            t: st.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("calls", "transcripts", "results", "findings")
        }
        assert counts == {"calls": n, "transcripts": n, "results": n, "findings": findings}
        per_call = st.execute(
            "SELECT count(DISTINCT call_id), min(c), max(c) FROM "
            "(SELECT call_id, count(*) AS c FROM verdicts GROUP BY call_id) x"
        ).fetchone()
        assert per_call[0] == n and per_call[1] == per_call[2] > 0
        assert len(st.current_results()) == n
        versions = st.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
        assert versions == len(migrations("postgres"))  # each applied once
    assert elapsed < 30, elapsed
