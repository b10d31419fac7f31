from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from qa_pipeline.messages import SCHEMA_VERSION, Severity
from qa_pipeline.metrics import PipelineMetrics
from qa_pipeline.sinks import Event, EventKind, FanOut, event_id_for, events_for_call

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


def test_event_ids_are_deterministic_across_runs(call_data: LoadCall) -> None:
    t, findings, sc = call_data("call-003")
    a = [e.event_id for e in events_for_call(t, findings, sc)]
    b = [e.event_id for e in events_for_call(t, findings, sc)]
    assert a == b
    assert a[0] == event_id_for(t.call.call_id, EventKind.UTTERANCE, 0)
    assert event_id_for("x", EventKind.FINDING, 1) != event_id_for("x", EventKind.ALERT, 1)


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


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def test_fanout_isolates_a_failing_sink_and_counts(
    registry: CollectorRegistry, call_data: LoadCall
) -> None:
    metrics = PipelineMetrics(registry)
    t, findings, sc = call_data("call-002")
    events = events_for_call(t, findings, sc)
    boom, good = Boom(), Collect()
    fan = FanOut([("boom", boom), ("good", good)], metrics)
    fan.emit_all(events)
    fan.flush(1.0)
    fan.close()
    assert good.events == events
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
