"""Prometheus metrics of the pipeline, fed by an observer, on an injected registry.

Nothing is registered at import time: build ``PipelineMetrics(CollectorRegistry())`` and pass
it to the stages (and as the ``observer`` of the sinks). The stages call the ``on_*``
methods; scraping is ``start_metrics_server(registry, host, port)``.

Metric names (all prefixed ``qa_``):

=====================================  ========= ==========================================
qa_active_calls                        gauge     calls started and not ended
qa_calls_total                         counter   calls started
qa_calls_failed_total                  counter   scorecards with ``failed`` (critical rule)
qa_calls_review_total                  counter   scorecards with ``review`` (an uncertain verdict)
qa_utterances_total{role}              counter   utterances transcribed
qa_findings_total{rule_id,severity}    counter   rule violations
qa_last_critical_finding_timestamp_seconds{rule_id}
                                       gauge     unix time of the last critical finding
qa_call_score                          histogram final call scores (0-100)
qa_asr_rtf                             histogram ASR seconds / audio seconds per utterance
qa_finding_latency_seconds             histogram end of utterance -> finding emitted
qa_queue_depth{stage}                  gauge     items waiting in a stage's queue
qa_dropped_total{stage,reason}         counter   items dropped in a stage (bounded queues)
qa_events_dropped_total{sink,reason}   counter   events a sink could not keep (disk full,
                                                 spool full, ...); alert QAEventsDropped
qa_sink_errors_total{sink,reason}      counter   sink failures by class
qa_sink_events_total{sink}             counter   events acknowledged by a sink
qa_spool_events{sink}                  gauge     events waiting in a sink's spool
qa_spool_bytes{sink}                   gauge     bytes waiting in a sink's spool
=====================================  ========= ==========================================

``qa_last_critical_finding_timestamp_seconds`` exists because a counter series that is born
at 1 has no visible ``increase()`` in Prometheus; alert rules use the timestamp instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .messages import CallInfo, Finding, Scorecard, Severity, Utterance

SCORE_BUCKETS = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0)
RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class PipelineMetrics:
    """All pipeline metrics on one registry, with an observer API (thread-safe)."""

    def __init__(self, registry: CollectorRegistry, *, stages: Iterable[str] = ()) -> None:
        self.registry = registry
        r = registry
        self.active_calls = Gauge("qa_active_calls", "Calls in progress", registry=r)
        self.calls = Counter("qa_calls", "Calls started", registry=r)
        self.calls_failed = Counter(
            "qa_calls_failed", "Calls whose scorecard failed (a critical rule)", registry=r
        )
        self.calls_review = Counter(
            "qa_calls_review",
            "Calls flagged for review (a verdict is uncertain: low-confidence speech)",
            registry=r,
        )
        self.utterances = Counter("qa_utterances", "Utterances transcribed", ["role"], registry=r)
        self.findings = Counter(
            "qa_findings", "Rule violations found", ["rule_id", "severity"], registry=r
        )
        self.last_critical = Gauge(
            "qa_last_critical_finding_timestamp_seconds",
            "Unix time of the last critical finding, per rule",
            ["rule_id"],
            registry=r,
        )
        self.call_score = Histogram(
            "qa_call_score", "Final call score (0-100)", buckets=SCORE_BUCKETS, registry=r
        )
        self.asr_rtf = Histogram(
            "qa_asr_rtf",
            "ASR real-time factor per utterance (decode seconds / audio seconds)",
            buckets=RTF_BUCKETS,
            registry=r,
        )
        self.finding_latency = Histogram(
            "qa_finding_latency_seconds",
            "End of the deciding utterance to the finding being emitted",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "qa_queue_depth", "Items waiting in a stage's queue", ["stage"], registry=r
        )
        self.dropped = Counter(
            "qa_dropped", "Items dropped, by stage and reason", ["stage", "reason"], registry=r
        )
        self.events_dropped = Counter(
            "qa_events_dropped",
            "Events a sink could not keep, by sink and reason",
            ["sink", "reason"],
            registry=r,
        )
        self.sink_errors = Counter(
            "qa_sink_errors",
            "Sink failures, by sink and error class",
            ["sink", "reason"],
            registry=r,
        )
        self.sink_events = Counter(
            "qa_sink_events", "Events acknowledged by a sink", ["sink"], registry=r
        )
        self.spool_events = Gauge(
            "qa_spool_events", "Events waiting in a sink's spool", ["sink"], registry=r
        )
        self.spool_bytes = Gauge(
            "qa_spool_bytes", "Bytes waiting in a sink's spool", ["sink"], registry=r
        )
        self._lock = threading.Lock()
        self._active: set[str] = set()
        for stage in stages:
            self.queue_depth.labels(stage)

    # -- calls -----------------------------------------------------------------------------

    def on_call_started(self, call: CallInfo | str) -> None:
        call_id = call if isinstance(call, str) else call.call_id
        with self._lock:
            if call_id in self._active:
                return
            self._active.add(call_id)
            self.active_calls.set(len(self._active))
        self.calls.inc()

    def on_call_ended(self, call_id: str) -> None:
        with self._lock:
            self._active.discard(call_id)
            self.active_calls.set(len(self._active))

    # -- data ------------------------------------------------------------------------------

    def on_utterance(self, utt: Utterance, asr_seconds: float | None = None) -> None:
        """``asr_seconds``: decode time of this utterance (None when replaying text)."""
        self.utterances.labels(utt.role.value).inc()
        if asr_seconds is not None and utt.duration > 0:
            self.asr_rtf.observe(asr_seconds / utt.duration)

    def on_finding(self, finding: Finding, latency_s: float | None = None) -> None:
        self.findings.labels(finding.rule_id, finding.severity.value).inc()
        if finding.severity is Severity.CRITICAL:
            self.last_critical.labels(finding.rule_id).set(time.time())
        if latency_s is not None:
            self.finding_latency.observe(max(0.0, latency_s))

    def on_scorecard(self, scorecard: Scorecard) -> None:
        self.call_score.observe(scorecard.score)
        if scorecard.failed:
            self.calls_failed.inc()
        if scorecard.review:
            self.calls_review.inc()

    # -- flow control ----------------------------------------------------------------------

    def on_queue_depth(self, stage: str, depth: int) -> None:
        self.queue_depth.labels(stage).set(depth)

    def on_drop(self, stage: str, reason: str, count: int = 1) -> None:
        self.dropped.labels(stage, reason).inc(count)

    # -- sinks (SinkObserver) --------------------------------------------------------------

    def on_sink_error(self, sink: str, reason: str) -> None:
        self.sink_errors.labels(sink, reason).inc()

    def on_event_dropped(self, sink: str, reason: str, count: int = 1) -> None:
        self.events_dropped.labels(sink, reason).inc(count)

    def on_sink_delivered(self, sink: str, count: int) -> None:
        self.sink_events.labels(sink).inc(count)

    def on_spool(self, sink: str, events: int, size_bytes: int) -> None:
        self.spool_events.labels(sink).set(events)
        self.spool_bytes.labels(sink).set(size_bytes)


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint; ``stop()`` shuts it down and frees the port."""

    server: WSGIServer
    thread: threading.Thread
    host: str

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9464
) -> MetricsServer:
    """Serve ``registry`` on ``http://host:port/metrics`` (port 0 = any free port)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server=server, thread=thread, host=host)
