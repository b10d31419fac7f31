"""The evaluator writes every ended call to the store exactly once (its transcript, utterance
rows, call row and scorecard as a result of the live run), also when a new owner replays a
partition after a rebalance: with the changelog (nothing emitted again) and without it (a
crash before the changelog was written: the same events again, upserted onto the same
rows). No broker: the partition logic and the store sink of ``qa-pipeline evaluate``."""

from __future__ import annotations

import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from qa_pipeline.evaluate_stage import EvaluateConfig, PartitionCalls, store_writer
from qa_pipeline.messages import replace
from qa_pipeline.rules import RulePack, load_pack
from qa_pipeline.sinks.base import Event, EventKind, FanOut
from qa_pipeline.store import Store
from qa_pipeline.store.writer import StoreSink
from qa_pipeline.testing import make_call
from qa_pipeline.testing.utterance_streams import utterance_stream
from qa_pipeline.transcript import Transcript
from qa_pipeline.wire import encode

MOBILE = "13912345678"


@pytest.fixture(scope="module")
def pack() -> RulePack:
    return load_pack()


def partition_log(n: int, seed: int) -> tuple[list[bytes], list[Transcript], int]:
    """Several calls' streams in one partition (the first two one after the other, the
    others interleaved after them) and how many records the first two take; the calls'
    metadata carries a caller number as a platform may hand it in (unredacted)."""
    rng = random.Random(seed)
    calls = []
    for i in range(n):
        t = make_call(200 + i, rng, rng.randrange(4, 20))
        call = replace(t.call, metadata=(*t.call.metadata, ("caller", MOBILE)))
        calls.append(Transcript(call, t.utterances, t.ended, t.asr))
    streams = [
        [encode(m) for m in utterance_stream(t, session_id=f"s-{i}")] for i, t in enumerate(calls)
    ]
    # the first two calls one after the other, the others interleaved after them
    log: list[bytes] = [*streams[0], *streams[1]]
    pos = [0] * n
    rest = range(2, n)
    while any(pos[i] < len(streams[i]) for i in rest):
        i = rng.choice([i for i in rest if pos[i] < len(streams[i])])
        log.append(streams[i][pos[i]])
        pos[i] += 1
    return log, calls, len(streams[0]) + len(streams[1])


def store_rows(target: str) -> dict[str, Any]:
    with Store(target, readonly=True) as s:
        q = s.execute
        return {
            "results": q(
                "SELECT run_id, call_id, score, complete FROM results ORDER BY call_id"
            ).fetchall(),
            "utterances": dict(
                q("SELECT call_id, COUNT(*) FROM utterances GROUP BY call_id").fetchall()
            ),
            "verdicts": q("SELECT COUNT(*) FROM verdicts").fetchone()[0],
            "transcripts": q("SELECT COUNT(*) FROM transcripts").fetchone()[0],
            "calls": [r[0] for r in q("SELECT call FROM calls").fetchall()],
        }


def test_each_ended_call_is_stored_once_also_after_a_replay(store_url: str, pack: RulePack) -> None:
    log, calls, sequential = partition_log(4, 11)
    registry = CollectorRegistry()
    writer = store_writer(EvaluateConfig(), store_url, pack, registry)
    fan = FanOut([("store", StoreSink(writer))])

    def owner(start: int, stop: int, emitted: Any = None) -> tuple[list[Event], Any, int]:
        part = PartitionCalls(0, pack, emitted=emitted)
        for off in range(start, stop):
            part.handle(off, log[off])
        events = part.drain()
        fan.emit_all(events)
        fan.flush(30)  # the checkpoint: the store before the changelog and the offsets
        return events, part.changes(), part.commit_offset() or 0

    cut = sequential + (len(log) - sequential) // 2
    first, changelog, committed = owner(0, cut)
    assert sequential <= committed < cut  # two calls closed, the others open at the cut
    closed_first = {e.call_id for e in first if e.kind is EventKind.SCORECARD}
    # a new owner with the changelog: the open calls replayed, nothing emitted twice
    second, _, _ = owner(committed, len(log), changelog)
    # a new owner that missed the changelog (the first crashed before writing it): every
    # call of the partition replayed from the start and emitted again
    third, _, _ = owner(0, len(log))
    cards = {e.call_id: e.payload for e in first + second if e.kind is EventKind.SCORECARD}
    assert set(cards) == {t.call.call_id for t in calls}
    assert closed_first and not closed_first & {
        e.call_id for e in second if e.kind is EventKind.SCORECARD
    }
    assert len([e for e in third if e.kind is EventKind.SCORECARD]) == len(calls)
    counts = writer.close(30)
    assert counts.written == len(calls) * 2 and counts.dropped_total == 0

    got = store_rows(store_url)
    run_id = f"live:{pack.name}:{pack.version}"
    assert [tuple(r) for r in got["results"]] == [
        (run_id, c, round(cards[c]["score"], 2), int(cards[c]["complete"])) for c in sorted(cards)
    ]
    fed = {
        c: len([e for e in first + second if e.kind is EventKind.UTTERANCE and e.call_id == c])
        for c in cards
    }
    assert got["utterances"] == fed
    assert got["verdicts"] == sum(len(cards[c]["verdicts"]) for c in cards)
    assert got["transcripts"] == len(calls)  # the replay's transcript is the same document
    assert all(MOBILE not in c for c in got["calls"])
    assert registry.get_sample_value("qa_store_writes_total") == len(calls) * 2


def test_evaluate_store_option_not_a_store_is_a_clear_error(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from qa_pipeline.cli import app

    cfg = tmp_path / "eval.yaml"
    cfg.write_text("sinks: {jsonl: null}\n", encoding="utf-8")
    args = ["--config", str(cfg), "--kafka", "127.0.0.1:9", "--store", "mysql://qa@db/qa"]
    res = CliRunner().invoke(app, ["evaluate", *args])
    assert res.exit_code == 2
    assert "mysql://qa@db/qa: not a store" in res.output
