from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from qa_pipeline.messages import SCHEMA_VERSION, Severity, replace
from qa_pipeline.metrics import PipelineMetrics
from qa_pipeline.sinks import (
    Event,
    EventDropped,
    EventFactory,
    EventKind,
    FanOut,
    event_id_for,
    events_for_call,
    new_session_id,
    with_session,
)
from qa_pipeline.testing import Recorder

LoadCall = Callable[[str], Any]


def test_events_for_call_order_ids_and_alerts(call_data: LoadCall) -> None:
    t, findings, sc = call_data("call-001")
    events = events_for_call(t, findings, sc)
    kinds = [e.kind for e in events]
    assert kinds.count(EventKind.UTTERANCE) == len(t.utterances)
    assert kinds.count(EventKind.FINDING) == len(findings)
    n_crit = sum(f.severity is Severity.CRITICAL for f in findings)
    assert n_crit == 1 and kinds.count(EventKind.ALERT) == n_crit
    # alert immediately follows its finding, right after the deciding utterance
    i = kinds.index(EventKind.ALERT)
    assert kinds[i - 1] is EventKind.FINDING and kinds[i - 2] is EventKind.UTTERANCE
    assert events[i - 2].payload["end"] == pytest.approx(events[i].payload["decided_at"])
    assert kinds[-2:] == [EventKind.SCORECARD, EventKind.TRANSCRIPT]
    assert [e.seq for e in events] == list(range(len(events)))
    assert all(e.schema_version == SCHEMA_VERSION and e.call_id == t.call.call_id for e in events)
    assert len({e.event_id for e in events}) == len(events)


def test_event_ids_are_deterministic_within_a_session(call_data: LoadCall) -> None:
    t, findings, sc = call_data("call-003")
    t = dataclasses.replace(t, call=with_session(t.call))
    a = [e.event_id for e in events_for_call(t, findings, sc)]
    b = [e.event_id for e in events_for_call(t, findings, sc)]
    assert a == b  # a replay (or producer retry) of the same session dedupes
    assert a[0] == event_id_for(t.call.session_id, EventKind.UTTERANCE, 0)
    assert event_id_for("x", EventKind.FINDING, 1) != event_id_for("x", EventKind.ALERT, 1)
    # the session id travels in every envelope and in the transcript's call
    events = events_for_call(t, findings, sc)
    assert {e.session_id for e in events} == {t.call.session_id}
    assert events[-1].payload["call"]["session_id"] == t.call.session_id


def test_a_recurring_call_id_gets_new_event_ids(call_data: LoadCall) -> None:
    """The same call id twice (a reused AudioSocket UUID, a replayed test) is two
    sessions: no event id of the second run equals one of the first."""
    t, findings, sc = call_data("call-003")
    assert t.call.session_id == ""  # a document written before session ids
    first = events_for_call(t, findings, sc)
    second = events_for_call(t, findings, sc)
    assert {e.call_id for e in first + second} == {t.call.call_id}
    assert first[0].session_id != second[0].session_id
    assert not {e.event_id for e in first} & {e.event_id for e in second}
    s1, s2 = new_session_id(), new_session_id()
    assert s1 != s2 and len(s1) == 32 and int(s1, 16) >= 0
    f1 = EventFactory(t.call.call_id, session_id=s1)
    f2 = EventFactory(t.call.call_id, session_id=s2)
    u = t.utterances[0]
    assert f1.utterance(u).event_id != f2.utterance(u).event_id
    assert with_session(replace(t.call, session_id=s1)).session_id == s1


def test_envelope_without_session_id_still_reads() -> None:
    old = (
        b'{"event_id":"e1","kind":"finding","call_id":"c1","seq":3,'
        b'"schema_version":"1.0","produced_at":"2024-01-01T00:00:00Z","payload":{}}'
    )
    ev = Event.from_json(old)
    assert ev.session_id == "" and ev.seq == 3


def test_event_json_round_trip_keeps_chinese_unescaped(call_data: LoadCall) -> None:
    t, findings, sc = call_data("call-001")
    ev = events_for_call(t, findings, sc)[0]
    raw = ev.to_json()
    assert "您好".encode() in raw
    assert Event.from_json(raw) == ev


class Boom:
    def __init__(self) -> None:
        self.closed = False

    def emit(self, event: Event) -> None:
        raise ConnectionError("down")

    def flush(self, timeout: float | None = None) -> None:
        raise TimeoutError("slow")

    def close(self) -> None:
        self.closed = True


def test_fanout_isolates_a_failing_sink_and_counts(
    registry: CollectorRegistry, call_data: LoadCall
) -> None:
    metrics = PipelineMetrics(registry)
    t, findings, sc = call_data("call-002")
    events = events_for_call(t, findings, sc)
    boom, good = Boom(), Recorder()
    fan = FanOut([("boom", boom), ("good", good)], metrics)
    fan.emit_all(events)
    fan.flush(1.0)
    fan.close()
    assert good.emitted == events
    assert boom.closed
    assert fan.errors["boom"] == len(events) + 1
    got = registry.get_sample_value(
        "qa_sink_errors_total", {"sink": "boom", "reason": "ConnectionError"}
    )
    assert got == len(events)
    assert (
        registry.get_sample_value(
            "qa_sink_errors_total", {"sink": "boom", "reason": "TimeoutError"}
        )
        == 1
    )


class Refuse:
    """A sink that cannot keep every third event (as a full queue or disk would)."""

    def __init__(self) -> None:
        self.kept: list[Event] = []
        self.n = 0

    def emit(self, event: Event) -> None:
        self.n += 1
        if self.n % 3 == 0:
            raise EventDropped("queue_full", "test")
        self.kept.append(event)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def test_fanout_counts_drops_with_reason(
    registry: CollectorRegistry, call_data: LoadCall, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = PipelineMetrics(registry)
    t, findings, sc = call_data("call-001")
    events = events_for_call(t, findings, sc)
    refuse, boom = Refuse(), Boom()
    fan = FanOut([("refuse", refuse), ("boom", boom)], metrics)
    with caplog.at_level("WARNING", logger="qa_pipeline.sinks"):
        fan.emit_all(events)
    n = len(events)
    assert fan.accepted == {"refuse": n, "boom": n}
    assert fan.dropped["refuse"] == {"queue_full": n // 3}
    assert len(refuse.kept) + fan.dropped["refuse"]["queue_full"] == n
    assert fan.dropped["boom"] == {"sink_error": n}

    def dropped(sink: str, reason: str) -> float | None:
        return registry.get_sample_value(
            "qa_events_dropped_total", {"sink": sink, "reason": reason}
        )

    assert dropped("refuse", "queue_full") == n // 3
    assert dropped("boom", "sink_error") == n
    # rate-limited: one warning per (sink, reason) in a burst, naming both
    warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert any("refuse" in w and "queue_full" in w for w in warnings)
    assert sum("refuse" in w for w in warnings) == 1
