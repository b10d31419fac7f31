"""No event lost: broker outage mid-run, and a pipeline process killed with SIGKILL.

An independent kafka-python consumer reads the topics afterwards; after de-duplication by
``event_id`` it must see every expected event exactly once, each call's events in order.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from replayed_calls import CALLS_DIR, replayed_events

from qa_pipeline.sinks import EventKind, Spool

TOPIC_OF = {
    EventKind.UTTERANCE: "utterances",
    EventKind.FINDING: "findings",
    EventKind.ALERT: "alerts",
    EventKind.SCORECARD: "scorecards",
    EventKind.TRANSCRIPT: "transcripts",
}


def expected_events() -> dict[str, tuple[str, str, int]]:
    """event_id -> (topic suffix, call id, seq) for the test calls (ids are deterministic)."""
    return {e.event_id: (TOPIC_OF[e.kind], e.call_id, e.seq) for e in replayed_events()}


def consume(bootstrap: str, prefix: str, want: set[str], timeout: float = 60) -> list[Any]:
    """Every record of the prefix's topics, read from the beginning by a fresh consumer."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="independent-checker",
    )
    try:
        parts = []
        deadline = time.monotonic() + timeout
        for suffix in sorted(set(TOPIC_OF.values())):
            topic = prefix + suffix
            ids = consumer.partitions_for_topic(topic)
            while not ids and time.monotonic() < deadline:
                time.sleep(0.5)
                consumer._client.cluster.request_update()  # topic auto-created late
                ids = consumer.partitions_for_topic(topic)
            assert ids, f"topic {topic} does not exist"
            parts += [TopicPartition(topic, p) for p in ids]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        seen: set[str] = set()
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for rec in batch:
                    records.append(rec)
                    seen.add(json.loads(rec.value)["event_id"])
            if want <= seen:
                # one more poll: anything after the last expected one (e.g. stray dupes)
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
                break
        return records
    finally:
        consumer.close()


def check_exactly_once_in_order(records: list[Any], prefix: str) -> dict[str, int]:
    want = expected_events()
    first: dict[str, Any] = {}
    dupes = 0
    for rec in records:
        ev = json.loads(rec.value)
        assert rec.key.decode() == ev["call_id"]
        if ev["event_id"] in first:
            dupes += 1
            continue
        first[ev["event_id"]] = rec
    assert set(first) == set(want), (
        f"missing {len(set(want) - set(first))}, unexpected {len(set(first) - set(want))}"
    )
    # per call and topic: one partition, seq increasing in offset order
    by_call_topic: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
    for eid, rec in first.items():
        suffix, call_id, seq = want[eid]
        assert rec.topic == prefix + suffix
        by_call_topic[(call_id, rec.topic)].append((rec.offset, rec.partition, seq))
    for key, rows in by_call_topic.items():
        assert len({p for _, p, _ in rows}) == 1, f"{key} spread over partitions"
        seqs = [s for _, _, s in sorted(rows)]
        assert seqs == sorted(seqs), f"{key} out of order: {seqs}"
    return {"records": len(records), "unique": len(first), "duplicates": dupes}


def test_broker_stopped_mid_run_and_restarted(
    kafka_server: Any, replay: Any, tmp_path: Path
) -> None:
    prefix = "outage."
    r = replay(
        "--transcripts", str(CALLS_DIR),
        "--kafka", kafka_server.bootstrap,
        "--topic-prefix", prefix,
        "--spool", str(tmp_path / "spool"),
        "--pace", "0.25",
        "--flush-timeout", "90",
        "--backoff-max", "1",
    )  # fmt: skip
    r.wait_for("call", call_id="call-001", timeout=60)
    kafka_server.stop()  # mid-run: call-002 and call-003 are emitted during the outage
    # at least 4 s, and until the sink has seen it (on a busy machine the producer's own
    # retries can outlast a fixed pause, and the outage would go unnoticed)
    until = time.monotonic() + 4
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any("unreachable" in line for line in r.log):
        time.sleep(0.2)
    time.sleep(max(until - time.monotonic(), 0.0))
    kafka_server.start()
    r.wait_for("done", timeout=150)
    assert r.wait(timeout=60) == 0
    assert r.status[-1]["spooled"] == 0
    # the outage outlasted the producer's own retries: the spool carried it
    assert any("unreachable" in line and kafka_server.bootstrap in line for line in r.log)
    assert any("reachable again" in line for line in r.log)
    records = consume(kafka_server.bootstrap, prefix, set(expected_events()))
    stats = check_exactly_once_in_order(records, prefix)
    assert stats["unique"] == len(expected_events())


def test_pipeline_killed_and_restarted_replays_spool(
    kafka_server: Any, replay: Any, tmp_path: Path
) -> None:
    prefix = "killed."
    spool_dir = tmp_path / "spool"
    n = len(expected_events())
    kafka_server.stop()
    try:
        r = replay(
            "--transcripts", str(CALLS_DIR),
            "--kafka", kafka_server.bootstrap,
            "--topic-prefix", prefix,
            "--spool", str(spool_dir),
            "--flush-timeout", "1",
            "--hold", "inf",
        )  # fmt: skip
        done = r.wait_for("done", timeout=60)
        assert done["spooled"] == n
        r.kill()  # SIGKILL: no clean shutdown, the spool is all that is left
    finally:
        kafka_server.start()
    sp = Spool(spool_dir)
    assert len(sp) == n
    sp.close()
    again = replay(
        "--drain-only",
        "--kafka", kafka_server.bootstrap,
        "--topic-prefix", prefix,
        "--spool", str(spool_dir),
        "--flush-timeout", "90",
    )  # fmt: skip
    assert again.wait(timeout=150) == 0
    assert again.status[-1] == {"status": "done", "events": 0, "spooled": 0}
    records = consume(kafka_server.bootstrap, prefix, set(expected_events()))
    stats = check_exactly_once_in_order(records, prefix)
    assert stats["unique"] == n


def test_killed_mid_delivery_then_rerun_dedupes(
    kafka_server: Any, replay: Any, tmp_path: Path
) -> None:
    """Killed while sending (broker up); the re-run re-emits the same calls: ids dedupe."""
    prefix = "rerun."
    args = (
        "--transcripts", str(CALLS_DIR),
        "--kafka", kafka_server.bootstrap,
        "--topic-prefix", prefix,
        "--spool", str(tmp_path / "spool"),
        "--flush-timeout", "90",
    )  # fmt: skip
    r = replay(*args, "--pace", "0.1")
    r.wait_for("call", call_id="call-002", timeout=60)
    r.kill()
    again = replay(*args)
    assert again.wait(timeout=150) == 0
    records = consume(kafka_server.bootstrap, prefix, set(expected_events()))
    stats = check_exactly_once_in_order(records, prefix)
    assert stats["duplicates"] > 0  # call-001 and call-002 were sent twice
