"""Issue 6 against a real broker: the standalone dashboard's Kafka feed (a real
KafkaConsumer, no consumer group) reads the topics the Kafka sink wrote and builds the same
call state as applying those events directly; a record that is not an event is counted and
skipped."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from qa_pipeline.dashboard.kafka_feed import KafkaFeed, topics_of
from qa_pipeline.dashboard.state import DashboardState
from qa_pipeline.sinks import events_for_call
from qa_pipeline.sinks.codec import finding_from_dict, scorecard_from_dict
from qa_pipeline.sinks.kafka import KafkaTopics
from qa_pipeline.transcript import transcript_from_dict

CALLS_DIR = Path(__file__).resolve().parents[1] / "sinks" / "data" / "calls"
COMPARED = ("score", "final", "grade", "failed", "findings", "utterances", "critical", "agent_id")


def _events() -> list[Any]:
    """The events the replay sends for the test calls (their ids are deterministic)."""
    out = []
    for path in sorted(CALLS_DIR.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        t = transcript_from_dict(doc)
        findings = [finding_from_dict(f, t.call.call_id) for f in doc["findings"]]
        out += events_for_call(t, findings, scorecard_from_dict(doc["scorecard"], t.call.call_id))
    return out


def test_dashboard_feed_reads_the_topics(kafka_server: Any, replay_test_calls: Any) -> None:
    prefix = "dash."
    replay_test_calls(kafka_server.bootstrap, prefix)
    producer = KafkaProducer(bootstrap_servers=kafka_server.bootstrap)
    try:
        producer.send(prefix + "findings", b"not json").get(timeout=30)
    finally:
        producer.close()

    events = _events()
    kinds = ("findings", "alerts", "scorecards", "transcripts", "utterances")
    topics = KafkaTopics(**{k: prefix + k for k in kinds})
    state = DashboardState()
    feed = KafkaFeed(
        state,
        topics_of(topics),
        {"bootstrap_servers": [kafka_server.bootstrap]},
        from_beginning=True,
    ).start()
    try:
        deadline = time.monotonic() + 90
        while state.events_applied < len(events) or feed.bad < 1:
            assert time.monotonic() < deadline, (
                f"read {state.events_applied} of {len(events)} events, {feed.bad} bad records"
            )
            time.sleep(0.2)
    finally:
        feed.stop()
    assert feed.bad == 1 and feed.errors == 0
    assert state.events_applied == len(events)

    direct = DashboardState()
    direct.apply_all(events)
    got = {c["call_id"]: c for c in state.snapshot()["calls"]}
    want = {c["call_id"]: c for c in direct.snapshot()["calls"]}
    assert set(got) == set(want) and len(want) == len(list(CALLS_DIR.glob("*.json")))
    for call_id, w in want.items():
        assert w["final"]  # every call ended with its scorecard
        for k in COMPARED:
            assert got[call_id][k] == w[k], (call_id, k)
