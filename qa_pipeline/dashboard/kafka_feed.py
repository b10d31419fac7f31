"""Standalone mode: consume the pipeline's Kafka topics into a :class:`DashboardState`.

For a team that runs the pipeline elsewhere: the same events the ``serve`` process would put
into its :class:`~qa_pipeline.dashboard.sink.DashboardSink` are read from the topics
(``qa.utterances``, ``qa.findings``, ``qa.alerts``, ``qa.scorecards``, ``qa.transcripts`` by
default). Topics are consumed independently, so one call's events may arrive out of order
across topics, and at least once; the state is built for both.

kafka-python is imported when the feed starts (``pip install 'qa-pipeline[kafka]'``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..kafka_security import CLIENT_KEYS, KafkaSecurity, connect, split_servers
from ..sinks.base import Event
from ..sinks.kafka import KafkaTopics
from .state import DashboardState

log = logging.getLogger("qa_pipeline.dashboard.kafka")

ConsumerFactory = Callable[..., Any]


def topics_of(topics: KafkaTopics) -> list[str]:
    """The configured topic names (kinds set to ``None`` are not read)."""
    names = [
        topics.utterances,
        topics.findings,
        topics.alerts,
        topics.scorecards,
        topics.transcripts,
    ]
    return list(dict.fromkeys(n for n in names if n))


def consumer_kwargs_from_sink(config: Any) -> dict[str, Any]:
    """Connection settings (servers, TLS, SASL, timeouts) of a ``KafkaSinkConfig``, for a
    consumer: the dashboard speaks to the brokers as the pipeline's producer does."""
    kw: dict[str, Any] = {
        "bootstrap_servers": list(config.bootstrap_servers),
        "request_timeout_ms": config.request_timeout_ms,
        "reconnect_backoff_max_ms": config.reconnect_backoff_max_ms,
    }
    security = config.security()
    kw.update(security.client_kwargs())
    if "security_protocol" not in security.model_fields_set:
        # not written: left out, so that split_security sees it unwritten too and a
        # remote broker is refused in clear (kafka-python's default is PLAINTEXT)
        kw.pop("security_protocol", None)
    return kw


def split_security(kwargs: dict[str, Any]) -> tuple[list[str], KafkaSecurity, dict[str, Any]]:
    """``consumer_kwargs`` → (servers, the security settings in them, the other arguments)."""
    rest = dict(kwargs)
    servers = split_servers(rest.pop("bootstrap_servers", None) or [])
    security = KafkaSecurity.model_validate({k: rest.pop(k) for k in CLIENT_KEYS if k in rest})
    return servers, security, rest


class KafkaFeed:
    """A thread that polls the topics and applies every event to ``state``.

    ``group_id=None`` (default): no consumer group, nothing committed; every dashboard
    instance reads all partitions. ``from_beginning``: replay what the topics retain (the
    state keeps the last ``max_calls`` calls and a day of violations), else only new events.
    Connection errors are logged and retried with a bounded back-off.

    ``consumer_kwargs`` hold the servers and the TLS/SASL settings
    (:func:`consumer_kwargs_from_sink`: those of the pipeline config's ``sinks.kafka``); a
    broker that refuses them is reported by name and cause
    (:class:`~qa_pipeline.kafka_security.KafkaConnectError`) in the log and ``last_error``.
    """

    def __init__(
        self,
        state: DashboardState,
        topics: Sequence[str],
        consumer_kwargs: dict[str, Any],
        *,
        group_id: str | None = None,
        from_beginning: bool = False,
        consumer_factory: ConsumerFactory | None = None,
        poll_timeout_ms: int = 200,
    ) -> None:
        if not topics:
            raise ValueError("no topics to read")
        self.state = state
        self.topics = list(topics)
        self.consumer_kwargs = dict(consumer_kwargs)
        self.group_id = group_id
        self.from_beginning = from_beginning
        self._factory = consumer_factory
        self._poll_timeout_ms = poll_timeout_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.messages = 0
        self.bad = 0
        self.errors = 0
        self.last_error: str | None = None
        self.connected = threading.Event()

    def _consumer(self) -> Any:
        factory = self._factory
        if factory is None:
            try:
                from kafka import KafkaConsumer
            except ImportError as e:  # pragma: no cover - optional extra
                raise RuntimeError(
                    "the standalone dashboard needs kafka-python: pip install 'qa-pipeline[kafka]'"
                ) from e
            factory = KafkaConsumer
        servers, security, rest = split_security(self.consumer_kwargs)
        consumer = connect(
            factory,
            servers,
            security,
            group_id=self.group_id,
            enable_auto_commit=self.group_id is not None,
            auto_offset_reset="earliest" if self.from_beginning else "latest",
            value_deserializer=None,
            client_id="qa-dashboard",
            **rest,
        )
        consumer.subscribe(self.topics)
        return consumer

    def take(self, value: bytes | str | None) -> bool:
        """Apply one record's value; ``False`` when it is not an event envelope."""
        self.messages += 1
        try:
            if value is None:
                raise ValueError("empty record")
            event = Event.from_json(value)
        except (ValueError, KeyError, TypeError) as e:
            self.bad += 1
            if self.bad == 1 or self.bad % 100 == 0:
                log.warning("Kafka: %d record(s) that are not events (last: %s)", self.bad, e)
            return False
        self.state.apply(event)
        return True

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = self._consumer()
                self.connected.set()
                backoff = 0.5
                while not self._stop.is_set():
                    batch = consumer.poll(timeout_ms=self._poll_timeout_ms, max_records=1000)
                    for records in batch.values():
                        for rec in records:
                            self.take(rec.value)
            except Exception as e:  # broker gone, auth, ...: log, back off, reconnect
                self.errors += 1
                self.last_error = str(e) or type(e).__name__
                log.error("Kafka feed (%s): %s; retrying in %.1fs", self.topics, e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        consumer.close()

    def start(self) -> KafkaFeed:
        self._thread = threading.Thread(target=self.run, name="qa-dashboard-kafka", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return self.connected.wait(max(0.0, deadline - time.monotonic()))
