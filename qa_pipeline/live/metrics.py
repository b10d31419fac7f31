"""Metrics of the live service: the pipeline's metrics plus a few of its own, one registry.

Added to :class:`~qa_pipeline.metrics.PipelineMetrics` (all on the injected registry):

===========================================  ========= =======================================
qa_live_call_errors_total{source,reason}     counter   per-call stream/processing errors
qa_live_calls_ended_total{reason}            counter   calls ended (stop, disconnect, error, ...)
qa_live_transcript_latency_seconds           histogram end of utterance (VAD) -> transcript out
qa_live_asr_batch_size                       histogram utterances per ASR decode
qa_live_asr_wait_seconds                     histogram time an utterance waited in the queue
qa_live_incomplete_scorecards_total{reason}  counter   scorecards of part of a call, by reason
qa_live_verify_total{outcome}                counter   calls' end verification (see .verifier)
qa_live_verify_seconds_total                 counter   ASR seconds of verification decodes
qa_retention_purged_total{kind,where}        counter   items deleted by the retention purge
qa_retention_purge_errors_total{where}       counter   purges of a place (store, spool...) failed
qa_retention_last_purge_timestamp_seconds    gauge     when the last purge finished (unix time)
===========================================  ========= =======================================

``keep_samples=True`` also keeps the raw latencies (the benchmark reads them).
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..messages import Finding, Utterance
from ..metrics import LATENCY_BUCKETS, PipelineMetrics

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)


class LiveMetrics(PipelineMetrics):
    def __init__(self, registry: CollectorRegistry, *, keep_samples: bool = False) -> None:
        super().__init__(registry, stages=("asr",))
        r = registry
        self.call_errors = Counter(
            "qa_live_call_errors",
            "Errors of one call's stream or processing",
            ["source", "reason"],
            registry=r,
        )
        self.calls_ended = Counter(
            "qa_live_calls_ended", "Calls ended, by reason", ["reason"], registry=r
        )
        self.transcript_latency = Histogram(
            "qa_live_transcript_latency_seconds",
            "End of utterance (VAD closed it) to its transcript being emitted",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "qa_live_asr_batch_size",
            "Utterances per ASR decode",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.asr_wait = Histogram(
            "qa_live_asr_wait_seconds",
            "Time an utterance waited for an ASR slot",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.incomplete = Counter(
            "qa_live_incomplete_scorecards",
            "Scorecards built from part of a call (ASR drops, cut off, shutdown), by reason",
            ["reason"],
            registry=r,
        )
        self.verify = Counter(
            "qa_live_verify",
            "Verification of required phrases at calls' end, by outcome (verified: the "
            "scorecard changed; unchanged; failed, timeout: the unverified one was sent)",
            ["outcome"],
            registry=r,
        )
        self.verify_seconds = Counter(
            "qa_live_verify_seconds", "ASR seconds spent on verification decodes", registry=r
        )
        self.purged = Counter(
            "qa_retention_purged",
            "Items deleted because they were older than retention allows",
            ["kind", "where"],
            registry=r,
        )
        self.purge_errors = Counter(
            "qa_retention_purge_errors",
            "Retention purges that failed, by place",
            ["where"],
            registry=r,
        )
        self.last_purge = Gauge(
            "qa_retention_last_purge_timestamp_seconds",
            "When the last retention purge finished",
            registry=r,
        )
        self.keep_samples = keep_samples
        self._samples_lock = threading.Lock()
        self.finding_latencies: list[float] = []
        self.transcript_latencies: list[float] = []
        self.asr_seconds = 0.0
        self.asr_audio_seconds = 0.0

    def on_call_error(self, source: str, reason: str) -> None:
        self.call_errors.labels(source, reason).inc()

    def on_call_closed(self, reason: str) -> None:
        self.calls_ended.labels(reason).inc()

    def on_incomplete(self, reasons: tuple[str, ...]) -> None:
        for reason in reasons:
            self.incomplete.labels(reason).inc()

    def on_verify(self, outcome: str, seconds: float) -> None:
        self.verify.labels(outcome).inc()
        if seconds:
            self.verify_seconds.inc(seconds)

    def on_purged(self, kind: str, where: str, count: int) -> None:
        self.purged.labels(kind, where).inc(count)

    def on_purge_finished(self) -> None:
        self.last_purge.set_to_current_time()

    def on_purge_error(self, where: str) -> None:
        self.purge_errors.labels(where).inc()

    def on_transcript(self, utt: Utterance, latency_s: float) -> None:
        self.transcript_latency.observe(max(0.0, latency_s))
        if self.keep_samples:
            with self._samples_lock:
                self.transcript_latencies.append(latency_s)

    def on_finding(self, finding: Finding, latency_s: float | None = None) -> None:
        super().on_finding(finding, latency_s)
        if self.keep_samples and latency_s is not None:
            with self._samples_lock:
                self.finding_latencies.append(latency_s)

    def on_asr_batch(self, size: int, seconds: float, audio_seconds: float) -> None:
        self.batch_size.observe(size)
        with self._samples_lock:
            self.asr_seconds += seconds
            self.asr_audio_seconds += audio_seconds
