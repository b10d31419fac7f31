"""Issue 6 against a real broker: the standalone dashboard's Kafka feed (a real
KafkaConsumer, no consumer group) reads the topics the Kafka sink wrote and builds the same
call state as applying those events directly; a record that is not an event is counted and
skipped."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaProducer
from replayed_calls import CALLS_DIR, replayed_events

from qa_pipeline.dashboard.kafka_feed import KafkaFeed, topics_of
from qa_pipeline.dashboard.state import DashboardState
from qa_pipeline.sinks.kafka import KafkaTopics

COMPARED = ("score", "final", "grade", "failed", "findings", "utterances", "critical", "agent_id")


def test_dashboard_feed_reads_the_topics(kafka_server: Any, replay_test_calls: Any) -> None:
    prefix = "dash."
    replay_test_calls(kafka_server.bootstrap, prefix)
    producer = KafkaProducer(bootstrap_servers=kafka_server.bootstrap)
    try:
        producer.send(prefix + "findings", b"not json").get(timeout=30)
    finally:
        producer.close()

    events = replayed_events()
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
