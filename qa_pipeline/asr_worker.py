"""``qa-pipeline asr-worker``: speech segments in, utterances out (the second stage).

A kafka-python consumer in group ``qa-asr`` reads the segments topic (``qa.segments``,
:mod:`qa_pipeline.wire`); any number of workers on any machines share its partitions, and
Kafka's group protocol moves a dead or leaving worker's partitions to the others. Each
:class:`~qa_pipeline.wire.WireSegment` is decoded by the ASR engine (the one the recorded
pipeline uses, with its decoder bias) and made an utterance by the text step exactly as
``Pipeline.transcribe`` makes it (normalised, hallucination-guarded, redacted by the
``privacy:`` section), its ``index`` the segment's ``seq``. The utterances topic
(``qa.asr.utterances``) gets, keyed by call id, per call and leg in the segments' order: the
leg's :class:`~qa_pipeline.wire.LegStart`, one :class:`~qa_pipeline.wire.WireUtterance` per
segment (the utterance, or ``dropped`` with the reason) and the leg's watermarks and end.

Order and delivery (:class:`AsrWorker`): the records of one poll are decoded together (the
engine's workers decode segments of several calls at once; a segment's text never depends on
its batch) and published in offset order per partition, each utterance as soon as its
segment is decoded (results come in input order), with ``acks=all`` and the
idempotent producer; only when the broker acknowledged all of them are the partitions'
offsets committed (``enable.auto.commit`` off). So a watermark or leg end is never published
before an utterance of a segment it covers, and a worker that dies loses nothing: the next
owner decodes again from the last commit and publishes the same ``(call_id, channel, seq)``
again, which readers de-duplicate (at least once). Nothing is in flight when the consumer
polls (where kafka-python runs a rebalance), so a revoked partition has nothing left to
publish; offsets acknowledged but not committed (a commit that failed) are committed then.

A record that is not a wire message (:class:`~qa_pipeline.wire.WireError`), or a message
that does not belong on the segments topic, is counted, logged with its partition and
offset, and skipped. A broker that cannot be reached at start, or that does not acknowledge
what was published in ``delivery_timeout_ms``, stops the worker with an ``error:`` line
naming it and exit status 1 (nothing unpublished is committed). SIGTERM or SIGINT: the batch
in hand is finished, published and committed, the worker leaves the group, prints its counts
as one JSON line and exits 0.

``--decoder stub[:sleep=S]`` is the STUB decoder (:mod:`qa_pipeline.asr.stub`) for tests
and benchmarks: fixed sentences, optionally sleeping S seconds per segment.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer

from .asr.result import AsrResult, is_kept
from .cli_errors import fail
from .errors import QAError
from .kafka_security import CLIENT_KEYS, KafkaConnectError, connect
from .messages import SpeechSegment
from .privacy import Redactor
from .sinks.kafka import KafkaSinkConfig, stage_kafka_config
from .stage_health import ConsumerLag, Heartbeat, serve_health, stop_on_signals
from .text import utterance
from .wire import (
    WireError,
    WireMessage,
    WireSegment,
    WireUtterance,
    decode,
    encode,
    headers,
)

log = logging.getLogger("qa_pipeline.asr_worker")

DEFAULT_INPUT = "qa.segments"
DEFAULT_OUTPUT = "qa.asr.utterances"
DEFAULT_GROUP = "qa-asr"
#: records taken per poll (segments, watermarks, leg ends): one decode batch
DEFAULT_MAX_RECORDS = 32
#: acknowledged offsets committed at most this often (a commit per batch was half of a
#: lightly loaded worker's cycle: 6.7 of 14.7 ms, p50, on the local broker)
DEFAULT_COMMIT_INTERVAL_MS = 500
EXIT_KAFKA = 1
#: the reason of a segment whose decode gave no text and no reason
NO_TEXT = "no_text"


class Decoder(Protocol):
    """What the worker needs of a decoder: :class:`~qa_pipeline.asr.engine.AsrEngine` or the
    stub (:class:`~qa_pipeline.asr.stub.StubEngine`)."""

    def transcribe_many(
        self,
        segments: Iterable[SpeechSegment],
        on_result: Callable[[AsrResult], None] | None = None,
    ) -> Iterator[AsrResult]: ...

    def transcribe_batch(self, segments: Iterable[SpeechSegment]) -> list[AsrResult]: ...


class DeliveryError(QAError):
    """The broker did not acknowledge what the worker published."""


def wire_utterance(seg: WireSegment, r: AsrResult, redactor: Redactor) -> WireUtterance:
    """What the utterances topic carries for ``seg`` decoded as ``r``: the utterance the
    text step makes of it (as in-process, ``index`` = ``seq``), or why there is none."""
    seconds = round(max(0.0, r.seconds), 4)
    if is_kept(r):
        u = utterance(r, seg.seq, redactor)
        return WireUtterance(
            call_id=seg.call_id, channel=seg.channel, seq=seg.seq, utterance=u,
            asr_seconds=seconds,
        )  # fmt: skip
    return WireUtterance(
        call_id=seg.call_id, channel=seg.channel, seq=seg.seq,
        dropped=r.dropped_reason or NO_TEXT, asr_seconds=seconds,
    )  # fmt: skip


@dataclass
class WorkerCounts:
    records: int = 0
    segments: int = 0
    utterances: int = 0
    dropped: int = 0
    passed_on: int = 0  # leg starts, watermarks, leg ends
    bad: int = 0
    batches: int = 0
    commits: int = 0
    commit_failures: int = 0
    asr_seconds: float = 0.0


class WorkerMetrics:
    """The worker's Prometheus metrics (own registry; ``--health-port`` serves them with
    ``/healthz``, :func:`~qa_pipeline.stage_health.serve_health`):

    ==========================================  ======= ===================================
    qa_asr_worker_segments_total{result}        counter segments decoded: ``utterance`` or
                                                        ``dropped``
    qa_asr_worker_bad_records_total             counter records skipped (not wire messages)
    qa_asr_worker_commit_failures_total         counter commits the group refused
    qa_asr_worker_decode_seconds_total          counter decoder wall time
    qa_consumer_lag{group,topic,partition}      gauge   records behind the partition's end
    qa_oldest_unprocessed_age_seconds{group}    gauge   age of the oldest record taken but not
                                                        yet committed, 0 when caught up
    ==========================================  ======= ===================================
    """

    def __init__(self, group: str, stall_s: float = 330.0) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.group = group
        #: ``/healthz``: 503 when the poll loop has not turned for ``stall_s``
        self.heartbeat = Heartbeat(stall_s, "poll loop")
        self.registry = r = CollectorRegistry()
        self.segments = Counter(
            "qa_asr_worker_segments", "Segments decoded", ["result"], registry=r
        )
        self.bad = Counter("qa_asr_worker_bad_records", "Records skipped", registry=r)
        self.commit_failures = Counter(
            "qa_asr_worker_commit_failures", "Commits the group refused", registry=r
        )
        self.decode_seconds = Counter(
            "qa_asr_worker_decode_seconds", "Decoder wall time", registry=r
        )
        self.lag = ConsumerLag(r, group)
        self.oldest_age = Gauge(
            "qa_oldest_unprocessed_age_seconds",
            "Age of the oldest record taken and not yet committed (0: caught up)",
            ["group"], registry=r,
        )  # fmt: skip


class AsrWorker:
    """The consume → decode → publish → commit loop over a kafka-python consumer (subscribed
    by :meth:`subscribe`) and producer; both injectable for tests."""

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        decoder: Decoder,
        redactor: Redactor,
        *,
        output_topic: str = DEFAULT_OUTPUT,
        servers: str = "",
        delivery_timeout_s: float = 35.0,
        batched: bool = False,
        metrics: WorkerMetrics | None = None,
        commit_interval_s: float = 0.0,
    ) -> None:
        self.consumer = consumer
        #: acknowledged offsets are committed at most this often (0: after every batch);
        #: a commit is a round trip that holds up the next poll. Also on revocation and at
        #: the end; a worker that dies decodes up to this much again (readers de-duplicate)
        self.commit_interval_s = commit_interval_s
        self._last_commit = -float("inf")
        self.batched = batched
        self.metrics = metrics
        self.producer = producer
        self.decoder = decoder
        self.redactor = redactor
        self.output_topic = output_topic
        self.servers = servers
        self.delivery_timeout_s = delivery_timeout_s
        self.counts = WorkerCounts()
        #: a commit that takes longer (the broker away) is counted as failed and retried
        #: with the next batch's
        self.commit_timeout_ms = 10_000
        #: offsets (next to read) whose records' output the broker acknowledged, by
        #: partition, not yet committed
        self._acked: dict[Any, int] = {}

    def subscribe(self, topic: str) -> None:
        from kafka import ConsumerRebalanceListener

        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                worker.on_revoked(revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                log.info("assigned %s", sorted(f"{tp.topic}-{tp.partition}" for tp in assigned))

        self.consumer.subscribe([topic], listener=Listener())

    def on_revoked(self, revoked: Iterable[Any]) -> None:
        """Partitions taken away (a rebalance, or leaving the group): nothing is in flight
        here (see the module docstring); what was acknowledged is committed."""
        gone = set(revoked)
        log.info("revoked %s", sorted(f"{tp.topic}-{tp.partition}" for tp in gone))
        self.commit({tp: o for tp, o in self._acked.items() if tp in gone})
        for tp in gone:
            self._acked.pop(tp, None)

    # -- one poll's records ----------------------------------------------------------------

    def read(self, records: Sequence[Any]) -> list[WireMessage | None]:
        """Each record's message, or None for one that is skipped (counted, logged)."""
        out: list[WireMessage | None] = []
        for rec in records:
            self.counts.records += 1
            try:
                if rec.value is None:
                    raise WireError("empty record")
                msg = decode(rec.value)
                if isinstance(msg, WireUtterance):
                    raise WireError("an utterance message on the segments topic")
            except WireError as e:
                self.counts.bad += 1
                log.warning(
                    "skipped record at %s-%d offset %d: %s", rec.topic, rec.partition, rec.offset, e
                )
                out.append(None)
                continue
            out.append(msg)
        return out

    def process(self, batch: Mapping[Any, Sequence[Any]]) -> None:
        """Decode, publish (in offset order per partition), wait for the broker's
        acknowledgements, commit. Raises :class:`DeliveryError` (nothing committed)."""
        if not batch:
            return
        self.counts.batches += 1
        if self.metrics is not None:
            oldest = min((r.timestamp for recs in batch.values() for r in recs), default=None)
            if oldest is not None and oldest > 0:
                age = max(0.0, time.time() - oldest / 1000)
                self.metrics.oldest_age.labels(self.metrics.group).set(age)
        parts = {tp: (recs, self.read(recs)) for tp, recs in batch.items() if recs}
        segs = [m for _, msgs in parts.values() for m in msgs if isinstance(m, WireSegment)]
        inputs = [s.to_segment() for s in segs]
        # results in input order (the segments' order in the loop below): each utterance is
        # handed to the producer as soon as its segment is decoded, not after the batch
        found: Iterator[AsrResult]
        if self.batched:
            found = iter(self.decoder.transcribe_batch(inputs))
        else:
            found = self.decoder.transcribe_many(inputs)
        results: list[AsrResult] = []
        futures: list[Any] = []
        for recs, msgs in parts.values():
            for rec, msg in zip(recs, msgs, strict=True):
                if msg is None:
                    continue
                if isinstance(msg, WireSegment):
                    r = next(found, None)
                    if r is None:  # pragma: no cover - a decoder bug
                        raise QAError(
                            f"decoder gave {len(results)} results for {len(segs)} segments"
                        )
                    results.append(r)
                    wu = wire_utterance(msg, r, self.redactor)
                    out: WireMessage = wu
                    value = encode(wu)
                    self.counts.segments += 1
                    self.counts.asr_seconds += r.seconds
                    if wu.utterance is not None:
                        self.counts.utterances += 1
                    else:
                        self.counts.dropped += 1
                else:  # leg start, watermark, leg end: passed on as they came
                    out, value = msg, rec.value
                    self.counts.passed_on += 1
                futures.append(self._send(out, value))
        if next(found, None) is not None:  # pragma: no cover - a decoder bug
            raise QAError(f"decoder gave more results than the {len(segs)} segments")
        self._wait(futures)
        if self.metrics is not None:
            m = self.metrics
            m.bad.inc(sum(v is None for _, msgs in parts.values() for v in msgs))
            m.decode_seconds.inc(sum(r.seconds for r in results))
            kept = sum(is_kept(r) for r in results)
            m.segments.labels("utterance").inc(kept)
            m.segments.labels("dropped").inc(len(results) - kept)
        for tp, (recs, _) in parts.items():
            self._acked[tp] = recs[-1].offset + 1
        self.commit_due()

    def commit_due(self) -> None:
        """Commit what was acknowledged when ``commit_interval_s`` has passed since the
        last commit."""
        if self._acked and time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.commit(dict(self._acked))

    def _send(self, msg: WireMessage, value: bytes) -> Any:
        try:
            return self.producer.send(
                self.output_topic, key=msg.call_id.encode(), value=value, headers=headers(msg)
            )
        except Exception as exc:
            raise self._error(exc) from exc

    def _wait(self, futures: Sequence[Any]) -> None:
        deadline = time.monotonic() + self.delivery_timeout_s
        try:
            for fut in futures:
                fut.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> DeliveryError:
        return DeliveryError(
            f"Kafka at {self.servers} did not acknowledge utterances on topic "
            f"{self.output_topic} ({type(exc).__name__}: {exc or 'no answer in time'}); "
            "offsets not committed: they will be decoded again"
        )

    def commit(self, offsets: dict[Any, int]) -> bool:
        """Commit ``offsets`` (next offset to read, by partition); a failed commit (the group
        rebalanced meanwhile) is logged and counted: the next owner decodes those records
        again and readers de-duplicate."""
        if not offsets:
            return True
        from kafka.structs import OffsetAndMetadata

        try:
            self.consumer.commit(
                {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()},
                timeout_ms=self.commit_timeout_ms,
            )
        except Exception as exc:  # CommitFailedError, a broker gone meanwhile, ...
            self.counts.commit_failures += 1
            if self.metrics is not None:
                self.metrics.commit_failures.inc()
            log.warning(
                "commit failed (%s: %s); published twice on replay", type(exc).__name__, exc
            )
            return False
        self.counts.commits += 1
        self._last_commit = time.monotonic()
        for tp, o in offsets.items():
            if self._acked.get(tp) == o:
                del self._acked[tp]
        return True

    def run(
        self,
        stop: threading.Event,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        poll_timeout_ms: int = 500,
    ) -> WorkerCounts:
        """Poll and :meth:`process` until ``stop`` is set (checked between batches)."""
        while not stop.is_set():
            batch = self.consumer.poll(timeout_ms=poll_timeout_ms, max_records=max_records)
            self.process(batch)
            if not batch:
                self.commit_due()
            self.observe()
        self.commit(dict(self._acked))
        return self.counts

    def observe(self) -> None:
        """Lag per assigned partition (the last known end offset minus the position), the
        oldest-record age back to 0 when caught up, and the loop's heartbeat."""
        m = self.metrics
        if m is None:
            return
        m.heartbeat.beat()
        total = 0
        held: set[tuple[str, int]] = set()
        try:
            for tp in self.consumer.assignment():
                hw = self.consumer.highwater(tp)
                if hw is None:
                    continue
                lag = max(0, hw - self.consumer.position(tp, timeout_ms=100))
                total += lag
                m.lag.set(tp.topic, tp.partition, lag)
                held.add((tp.topic, tp.partition))
        except Exception as exc:  # metrics never stop the worker
            log.debug("lag not measured: %r", exc)
            return
        # a partition handed on to another worker: its new owner reports it, no stale figure
        m.lag.keep(held)
        if total == 0:
            m.oldest_age.labels(m.group).set(0)

    def close(self, timeout: float = 10.0) -> None:
        """Leave the group (its partitions go to the others at once) and close both clients."""
        for name, client in (("consumer", self.consumer), ("producer", self.producer)):
            try:
                if name == "producer":
                    client.close(timeout=timeout)
                else:
                    client.close()
            except Exception as exc:  # closing a broken client: nothing left to lose
                log.debug("closing kafka %s: %r", name, exc)


# -- the command -------------------------------------------------------------------------------


def make_decoder(spec: str, cfg: Any) -> Decoder:
    """``whisper`` (the configured ASR engine, biased to the configured pack) or the stub."""
    if spec == "whisper":
        from .pipeline import Pipeline

        engine: Decoder = Pipeline(cfg).engine
        return engine
    from .asr.stub import parse_stub

    stub = parse_stub(spec)
    log.warning("STUB decoder (%s): fixed sentences, not speech recognition", spec)
    return stub


def build_worker(
    kcfg: KafkaSinkConfig,
    decoder: Decoder,
    redactor: Redactor,
    *,
    group: str,
    output_topic: str,
    session_timeout_ms: int,
    max_poll_interval_ms: int,
    batched: bool = False,
    metrics: WorkerMetrics | None = None,
    commit_interval_s: float = 0.0,
    consumer_factory: Callable[..., Any] | None = None,
    producer_factory: Callable[..., Any] | None = None,
) -> AsrWorker:
    if consumer_factory is None or producer_factory is None:
        try:
            from kafka import KafkaConsumer, KafkaProducer
        except ImportError as e:  # pragma: no cover - optional extra
            raise QAError("asr-worker needs kafka-python: pip install 'qa-pipeline[kafka]'") from e
        consumer_factory = consumer_factory or KafkaConsumer
        producer_factory = producer_factory or KafkaProducer
    servers = list(kcfg.bootstrap_servers)
    security = kcfg.security()
    pkw = kcfg.producer_kwargs()
    for key in ("bootstrap_servers", *CLIENT_KEYS):
        pkw.pop(key, None)
    pkw["client_id"] = f"{kcfg.client_id}-asr-worker"
    producer = connect(producer_factory, servers, security, **pkw)
    try:
        consumer = connect(
            consumer_factory,
            servers,
            security,
            group_id=group,
            client_id=f"{kcfg.client_id}-asr-worker",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(500, session_timeout_ms // 3),
            max_poll_interval_ms=max_poll_interval_ms,
            reconnect_backoff_max_ms=kcfg.reconnect_backoff_max_ms,
        )
    except BaseException:
        producer.close(timeout=1)
        raise
    return AsrWorker(
        consumer,
        producer,
        decoder,
        redactor,
        output_topic=output_topic,
        servers=", ".join(servers),
        delivery_timeout_s=kcfg.delivery_timeout_ms / 1000 + 5,
        batched=batched,
        metrics=metrics,
        commit_interval_s=commit_interval_s,
    )


def asr_worker_command(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="YAML config (asr, privacy; sinks.kafka: brokers, TLS, SASL)"
        ),
    ] = None,
    kafka: Annotated[
        str | None,
        typer.Option("--kafka", help="bootstrap servers (host:port,...): overrides sinks.kafka"),
    ] = None,
    input_topic: Annotated[str, typer.Option("--input", help="segments topic")] = DEFAULT_INPUT,
    output_topic: Annotated[
        str, typer.Option("--output", help="utterances topic")
    ] = DEFAULT_OUTPUT,
    group: Annotated[str, typer.Option("--group", help="consumer group")] = DEFAULT_GROUP,
    decoder: Annotated[
        str,
        typer.Option(
            "--decoder",
            help="'whisper' (the configured ASR), or 'stub[:sleep=SECONDS]': a STUB for tests "
            "and benchmarks that returns fixed sentences, sleeping SECONDS per segment",
        ),
    ] = "whisper",
    max_records: Annotated[
        int, typer.Option("--max-records", min=1, help="records per poll (one decode batch)")
    ] = DEFAULT_MAX_RECORDS,
    session_timeout_ms: Annotated[
        int,
        typer.Option(
            "--session-timeout-ms",
            min=1000,
            help="how long the group waits for a silent worker before moving its partitions",
        ),
    ] = 45_000,
    batch: Annotated[
        str,
        typer.Option(
            "--batch",
            help="'on': a poll's segments decoded as batches (one encode and generate per "
            "group of the same window: for CUDA); 'off': on the engine's parallel workers "
            "(faster on CPU); 'auto': on for CUDA",
        ),
    ] = "auto",
    max_poll_interval_ms: Annotated[
        int,
        typer.Option(
            "--max-poll-interval-ms", min=1000, help="the longest one batch may take to decode"
        ),
    ] = 300_000,
    commit_interval_ms: Annotated[
        int,
        typer.Option(
            "--commit-interval-ms",
            min=0,
            help="commit acknowledged offsets at most this often (0: after every batch; a "
            "worker that dies decodes up to this much again)",
        ),
    ] = DEFAULT_COMMIT_INTERVAL_MS,
    health_port: Annotated[
        int | None,
        typer.Option(
            "--health-port",
            min=0,
            max=65535,
            help="serve /healthz and /metrics (consumer lag, oldest unprocessed record) on "
            "this port (0: any free port; default: none)",
        ),
    ] = None,
    health_host: Annotated[
        str, typer.Option("--health-host", help="address of the health/metrics listener")
    ] = "127.0.0.1",
) -> None:
    """Decode speech segments from Kafka into utterances (the ASR stage of the distributed
    pipeline; run any number of them in one consumer group)."""
    from .config import load_config

    try:
        cfg = load_config(config)
        kcfg = stage_kafka_config(cfg.sinks.kafka, kafka)
        if batch not in ("auto", "on", "off"):
            raise QAError(f"--batch {batch!r}: expected auto, on or off")
        engine = make_decoder(decoder, cfg)
        batched = batch == "on" or (batch == "auto" and getattr(engine, "device", "") == "cuda")
    except (QAError, ValueError, OSError) as e:
        fail(e)
    stop = threading.Event()
    stop_on_signals(stop.set, "finishing the batch in hand")
    metrics = None
    health = None
    if health_port is not None:
        metrics = WorkerMetrics(group, stall_s=max_poll_interval_ms / 1000 + 30)
        try:
            health = serve_health(metrics.registry, metrics.heartbeat, health_host, health_port)
        except OSError as e:
            fail(QAError(f"--health-port {health_port}: {e}"))
        log.info("health and metrics on %s", health.url)
    try:
        worker = build_worker(
            kcfg,
            engine,
            Redactor(cfg.privacy),
            group=group,
            output_topic=output_topic,
            session_timeout_ms=session_timeout_ms,
            max_poll_interval_ms=max_poll_interval_ms,
            batched=batched,
            metrics=metrics,
            commit_interval_s=commit_interval_ms / 1000,
        )
    except KafkaConnectError as e:
        fail(e, EXIT_KAFKA)
    code = 0
    try:
        worker.subscribe(input_topic)
        log.info(
            "asr-worker: %s -> %s, group %s%s",
            input_topic, output_topic, group, ", batched decoding" if batched else "",
        )  # fmt: skip
        worker.run(stop, max_records=max_records)
    except DeliveryError as e:
        typer.echo(f"error: {e}", err=True)
        code = EXIT_KAFKA
    except Exception as e:  # a decoder failure (model, CUDA): nothing of the batch committed
        log.exception("asr-worker stopped")
        typer.echo(
            f"error: {type(e).__name__}: {e} (the batch in hand was not committed: it is "
            "decoded again by the next owner)",
            err=True,
        )
        code = EXIT_KAFKA
    finally:
        worker.close()
        if health is not None:
            health.stop()
    sys.stdout.write(json.dumps({"asr_worker": asdict(worker.counts)}) + "\n")
    sys.stdout.flush()
    if code:
        raise typer.Exit(code)


__all__ = [
    "AsrWorker",
    "DeliveryError",
    "WorkerCounts",
    "WorkerMetrics",
    "asr_worker_command",
    "build_worker",
    "make_decoder",
    "wire_utterance",
]
