"""Kafka sink: every event goes to a durable spool first, a sender thread drains it in order.

``emit`` only appends to the on-disk :class:`~qa_pipeline.sinks.spool.Spool` (never waits for
the broker). One sender thread takes the oldest events, produces them with kafka-python
(``acks=all``, idempotent producer, retries), waits for the broker's acknowledgement, and
only then deletes them from the spool. While the broker is unreachable events stay in the
spool (bounded, counted overflow); when it answers again they go out in spool order.

Delivery is at least once: after an outage a batch may be sent again, so consumers
de-duplicate by ``event_id`` (deterministic per session, see ``base.event_id_for``). The key is
the call id, so one call's events of a topic stay ordered in one partition.

kafka-python is an optional dependency, imported when a sink is built.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import QAError
from ..kafka_security import CLIENT_KEYS, KafkaConnectError, KafkaSecurity, connect, split_servers
from .base import DROP_LOG, Event, EventDropped, EventKind, NullObserver, SinkObserver
from .spool import OverflowPolicy, Spool, SpoolError, SpoolRecord, SyncPolicy

if TYPE_CHECKING:
    from kafka import KafkaProducer

log = logging.getLogger("qa_pipeline.sinks.kafka")

SINK_NAME = "kafka"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaTopics(_Model):
    """Topic per event kind; ``None`` = that kind is not sent to Kafka."""

    findings: str | None = "qa.findings"
    alerts: str | None = "qa.alerts"
    scorecards: str | None = "qa.scorecards"
    transcripts: str | None = "qa.transcripts"
    utterances: str | None = "qa.utterances"

    def for_kind(self, kind: EventKind | str) -> str | None:
        return {
            EventKind.FINDING: self.findings,
            EventKind.ALERT: self.alerts,
            EventKind.SCORECARD: self.scorecards,
            EventKind.TRANSCRIPT: self.transcripts,
            EventKind.UTTERANCE: self.utterances,
        }[EventKind(kind)]


class SpoolConfig(_Model):
    directory: str = Field(default="out/spool/kafka", description="spool directory (one owner)")
    max_events: int = Field(default=1_000_000, ge=1)
    max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    overflow: OverflowPolicy = "drop_oldest"
    sync: SyncPolicy = Field(
        default="full", description="'full': fsync each append; 'normal': survive process kill"
    )


class KafkaSinkConfig(KafkaSecurity):
    """Producer and spool settings, and the connection's security settings
    (:class:`~qa_pipeline.kafka_security.KafkaSecurity`: TLS, SASL/SCRAM), which every other
    Kafka client of the project reads from this section too. Unknown keys are rejected."""

    bootstrap_servers: tuple[str, ...] = Field(
        min_length=1, description="host:port of one or more brokers"
    )
    topics: KafkaTopics = KafkaTopics()
    client_id: str = "qa-pipeline"
    acks: Literal["all"] = Field(default="all", description="only 'all': no event lost")
    retries: int = Field(default=10, ge=1, description="producer retries per batch")
    enable_idempotence: bool = True
    linger_ms: int = Field(default=5, ge=0)
    batch_size: int = Field(default=64 * 1024, ge=1024)
    compression_type: Literal["gzip", "lz4", "snappy", "zstd"] | None = None
    request_timeout_ms: int = Field(default=10_000, ge=1000)
    delivery_timeout_ms: int = Field(default=30_000, ge=1000)
    max_block_ms: int = Field(default=5_000, ge=100, description="metadata wait per send")
    reconnect_backoff_max_ms: int = Field(default=2_000, ge=50)
    spool: SpoolConfig = SpoolConfig()
    send_batch: int = Field(default=500, ge=1, le=10_000, description="events per send round")
    backoff_initial_s: float = Field(default=0.2, gt=0)
    backoff_max_s: float = Field(default=10.0, gt=0)
    close_timeout_s: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSinkConfig:
        self.check_servers(self.bootstrap_servers)
        if self.delivery_timeout_ms < self.request_timeout_ms + self.linger_ms:
            raise ValueError("delivery_timeout_ms must be >= request_timeout_ms + linger_ms")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self

    def producer_kwargs(self) -> dict[str, Any]:
        """Arguments for ``kafka.KafkaProducer`` (secrets unwrapped here only)."""
        kw: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "client_id": self.client_id,
            "acks": self.acks,
            "retries": self.retries,
            "enable_idempotence": self.enable_idempotence,
            "linger_ms": self.linger_ms,
            "batch_size": self.batch_size,
            "compression_type": self.compression_type,
            "request_timeout_ms": self.request_timeout_ms,
            "delivery_timeout_ms": self.delivery_timeout_ms,
            "max_block_ms": self.max_block_ms,
            "bootstrap_timeout_ms": self.max_block_ms,
            "reconnect_backoff_max_ms": self.reconnect_backoff_max_ms,
            "max_in_flight_requests_per_connection": 5,
        }
        kw.update(self.client_kwargs())
        return kw


def stage_kafka_config(section: KafkaSinkConfig | None, servers: str | None) -> KafkaSinkConfig:
    """The Kafka settings of a distributed stage (``ingest``, ``asr-worker``, ``evaluate``):
    the config's ``sinks.kafka`` section with its brokers replaced by ``servers`` (the
    ``--kafka host:port,...`` option) when given, every other setting (TLS, SASL, timeouts)
    kept; without a section, ``servers`` with the defaults. Neither: :class:`QAError`."""
    if servers:
        brokers = tuple(split_servers(servers))
        if section is None:
            return KafkaSinkConfig(bootstrap_servers=brokers)
        return KafkaSinkConfig.model_validate(
            {**section.model_dump(exclude_unset=True), "bootstrap_servers": brokers}
        )
    if section is None:
        raise QAError("no broker: give --kafka HOST:PORT or sinks.kafka in --config")
    return section


def _import_kafka() -> Any:
    try:
        import kafka
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the Kafka sink needs kafka-python: pip install 'kafka-python==3.0.12'"
        ) from e
    return kafka


# -- error classification -------------------------------------------------------------------

#: unreachable broker, timeouts, leader moves: keep the events, back off, retry
RETRY = "unavailable"
#: this one record can never be accepted (too large, invalid): dead-letter it, go on
REJECT = "rejected"
#: credentials / ACLs / configuration: nothing will work until an operator acts
FATAL = "config"


def classify(exc: BaseException) -> str:
    """Map a kafka-python error to RETRY, REJECT or FATAL."""
    if isinstance(exc, KafkaConnectError):  # bootstrap failed: credentials/TLS, or an outage
        return FATAL if exc.settings else RETRY
    errors = _import_kafka().errors
    rejected = (
        errors.MessageSizeTooLargeError,
        errors.RecordListTooLargeError,
        errors.InvalidRecordError,
        errors.CorruptRecordError,
        TypeError,
    )
    if isinstance(exc, rejected):
        return REJECT
    if isinstance(
        exc,
        (
            errors.AuthorizationError,
            errors.SaslAuthenticationFailedError,
            errors.UnsupportedSaslMechanismError,
            errors.KafkaConfigurationError,
            errors.InvalidTopicError,
            errors.UnsupportedVersionError,
        ),
    ):
        return FATAL
    if isinstance(exc, errors.KafkaError) and getattr(exc, "retriable", False):
        return RETRY
    if isinstance(exc, (OSError, errors.KafkaError)):
        return RETRY  # other broker-side states (e.g. producer fenced): new producer, retry
    return FATAL


class Backoff:
    """Bounded exponential delay with ±20 % jitter: initial, 2×, 4×, ... up to ``maximum``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * (2 ** min(self.failures, 30)))
        self.failures += 1
        return float(delay * random.uniform(0.8, 1.2))

    def reset(self) -> None:
        self.failures = 0


class _BatchFailed(Exception):
    def __init__(self, cause: BaseException, record: SpoolRecord | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.record = record


class KafkaSink:
    """Durable, ordered, non-blocking Kafka sink (see the module docstring)."""

    def __init__(
        self,
        config: KafkaSinkConfig,
        observer: SinkObserver | None = None,
        *,
        name: str = SINK_NAME,
        start: bool = True,
    ) -> None:
        _import_kafka()
        self.config = config
        self.name = name
        self._observer: SinkObserver = observer or NullObserver()
        self.spool = Spool(
            config.spool.directory,
            max_events=config.spool.max_events,
            max_bytes=config.spool.max_bytes,
            overflow=config.spool.overflow,
            sync=config.spool.sync,
            name=name,
            observer=self._observer,
        )
        self._servers = ",".join(config.bootstrap_servers)
        self._producer: KafkaProducer | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self._outage_since: float | None = None
        self.delivered = 0
        self.errors: dict[str, int] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-sender", daemon=True)
        if len(self.spool):
            log.info(
                "kafka sink: %d spooled events from a previous run in %s will be sent first",
                len(self.spool),
                config.spool.directory,
            )
        if start:
            self._thread.start()

    # -- Sink API --------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Append to the spool (durable) and wake the sender; never waits for the broker.

        Raises :class:`EventDropped` when the spool cannot store it (disk full, I/O error);
        a full spool's overflow policy is counted by the spool itself."""
        self._append((event,))

    def emit_many(self, events: tuple[Event, ...] | list[Event]) -> None:
        """Several events in one spool transaction (one fsync); losses counted here."""
        try:
            self._append(events)
        except EventDropped as exc:
            n = sum(1 for e in events if self.config.topics.for_kind(e.kind) is not None)
            self._observer.on_event_dropped(self.name, exc.reason, n)
            DROP_LOG.dropped(self.name, exc.reason, n, exc.detail)

    def _append(self, events: tuple[Event, ...] | list[Event]) -> None:
        records = [
            (e.kind.value, e.call_id, e.to_json())
            for e in events
            if self.config.topics.for_kind(e.kind) is not None
        ]
        if not records:
            return
        try:
            self.spool.append_many(records)
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            reason = "disk_full" if code == sqlite3.SQLITE_FULL else "spool_error"
            raise EventDropped(reason, f"spool {self.config.spool.directory}: {exc}") from exc
        self._wake.set()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the spool is empty (all acknowledged) or ``timeout`` passes."""
        self._wake.set()
        with self._progress:
            self._progress.wait_for(
                lambda: len(self.spool) == 0 or not self._thread.is_alive(), timeout
            )

    def close(self) -> None:
        """Flush up to ``close_timeout_s``, stop the sender; undelivered events stay spooled."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self.flush(self.config.close_timeout_s)
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout=self.config.request_timeout_ms / 1000 + 5)
        left = len(self.spool)
        if left:
            log.warning(
                "kafka sink closed with %d events still spooled in %s; they are sent on the "
                "next start",
                left,
                self.config.spool.directory,
            )
        self._close_producer(timeout=5.0)
        self.spool.close()

    # -- sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                batch = self.spool.peek(self.config.send_batch)
            except (sqlite3.Error, SpoolError) as exc:  # disk trouble: count, wait, retry
                if self._stop.is_set():
                    break
                self._observer.on_sink_error(self.name, "spool")
                log.error("kafka sink: cannot read spool %s: %r", self.spool.directory, exc)
                self._stop.wait(self._backoff.next_delay())
                continue
            if not batch:
                with self._progress:
                    self._progress.notify_all()
                self._wake.wait(timeout=5.0)
                continue
            try:
                self._send_batch(batch)
            except _BatchFailed as failure:
                self._handle_failure(failure)
            else:
                if self._outage_since is not None:
                    log.warning(
                        "kafka at %s reachable again after %.1fs; %d events still spooled",
                        self._servers,
                        time.monotonic() - self._outage_since,
                        len(self.spool),
                    )
                    self._outage_since = None
                self._backoff.reset()
        with self._progress:
            self._progress.notify_all()

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            kafka = _import_kafka()
            kw = self.config.producer_kwargs()
            for key in ("bootstrap_servers", *CLIENT_KEYS):
                kw.pop(key, None)
            self._producer = connect(
                kafka.KafkaProducer, self.config.bootstrap_servers, self.config.security(), **kw
            )
        return self._producer

    def _send_batch(self, batch: list[SpoolRecord]) -> None:
        """Produce ``batch`` in order; ack the acknowledged prefix; raise on first failure."""
        try:
            producer = self._ensure_producer()
        except Exception as exc:
            raise _BatchFailed(exc, None) from exc
        sent: list[tuple[SpoolRecord, Any]] = []
        failure: _BatchFailed | None = None
        for rec in batch:
            topic = self.config.topics.for_kind(rec.kind)
            if topic is None:  # topic switched off since the event was spooled
                sent.append((rec, None))
                continue
            try:
                fut = producer.send(
                    topic,
                    key=rec.key.encode(),
                    value=rec.value,
                    headers=[("kind", rec.kind.encode())],
                )
            except Exception as exc:
                failure = _BatchFailed(exc, rec)
                break
            sent.append((rec, fut))
        wait_s = self.config.delivery_timeout_ms / 1000 + 5
        deadline = time.monotonic() + wait_s
        last_ok: int | None = None
        acked = 0
        for rec, fut in sent:
            if fut is not None:
                try:
                    self._wait(fut, deadline)
                except Exception as exc:
                    failure = _BatchFailed(exc, rec)
                    break
                acked += 1
            last_ok = rec.id
        if last_ok is not None:
            self.spool.ack(last_ok)
            self.delivered += acked
            self._observer.on_sink_delivered(self.name, acked)
            with self._progress:
                self._progress.notify_all()
        if failure is not None:
            raise failure

    def _wait(self, fut: Any, deadline: float) -> None:
        """Wait for one record's acknowledgement in short slices, so ``close`` is prompt."""
        while not fut.is_done:
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                raise TimeoutError("no acknowledgement from kafka in time")
            try:
                fut.get(timeout=min(0.5, left))
            except Exception:
                if not fut.is_done:
                    continue  # slice over, not done yet
                raise
        if fut.exception is not None:
            raise fut.exception

    def _handle_failure(self, failure: _BatchFailed) -> None:
        exc = failure.cause
        if self._stop.is_set():  # closing: what is not acknowledged stays spooled
            self._close_producer(timeout=0.0)
            return
        kind = classify(exc)
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self._observer.on_sink_error(self.name, kind)
        if kind == REJECT and failure.record is not None:
            rec = failure.record
            log.error(
                "kafka rejected event %s of call %s for good (%r); dropped to dead letters",
                rec.kind,
                rec.key,
                exc,
            )
            self._dead_letter(rec, exc)
            self.spool.ack(rec.id)
            self._observer.on_event_dropped(self.name, "rejected")
            return
        # the producer may hold half-sent batches: start clean (duplicates are deduped)
        self._close_producer(timeout=0.0)
        delay = self._backoff.next_delay()
        if self._outage_since is None:
            self._outage_since = time.monotonic()
        level = logging.ERROR if kind == FATAL else logging.WARNING
        if self._backoff.failures == 1 or self._backoff.failures % 10 == 0 or kind == FATAL:
            log.log(
                level,
                "kafka at %s unreachable or failing (%s: %s); %d events kept in spool %s; "
                "retry %d in %.1fs",
                self._servers,
                type(exc).__name__,
                exc,
                len(self.spool),
                self.config.spool.directory,
                self._backoff.failures,
                delay,
            )
        self._stop.wait(delay)

    def _dead_letter(self, rec: SpoolRecord, exc: BaseException) -> None:
        path = self.spool.directory / "dead-letter.jsonl"
        with path.open("ab") as f:
            f.write(rec.value.rstrip(b"\n") + b"\n")
        log.error("dead letter written to %s (%s)", path, type(exc).__name__)

    def _close_producer(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=timeout)
            except Exception as exc:  # closing a broken client: log and forget it
                log.debug("closing kafka producer: %r", exc)
