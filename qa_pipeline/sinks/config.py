"""The ``sinks:`` section of the pipeline config, and building the sinks from it.

Without a ``kafka`` entry the embedded default applies: JSONL files (stdout on request),
no server needed. Example::

    sinks:
      jsonl: {directory: out/events, layout: per_kind, stdout: false,
              fsync: interval, fsync_interval_s: 1.0,       # or every_event / never
              rotate_max_bytes: 268435456, rotate_daily: true, keep_rotated: 30}
      kafka:
        bootstrap_servers: ["kafka-1:9092"]
        topics: {findings: qa.findings, alerts: qa.alerts}
        spool: {directory: /var/spool/qa-pipeline/kafka, max_bytes: 536870912}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from .base import FanOut, Sink, SinkObserver
from .jsonl import JsonlSink, JsonlSinkConfig
from .kafka import KafkaSinkConfig


class SinksConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    jsonl: JsonlSinkConfig | None = JsonlSinkConfig()
    kafka: KafkaSinkConfig | None = None

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> SinksConfig:
        return cls.model_validate(data or {})


def build_sinks(config: SinksConfig, observer: SinkObserver | None = None) -> FanOut:
    """A :class:`FanOut` over the configured sinks (JSONL first, then Kafka)."""
    sinks: list[tuple[str, Sink]] = []
    if config.jsonl is not None:
        sinks.append(("jsonl", JsonlSink(config.jsonl, observer=observer)))
    if config.kafka is not None:
        from .kafka import KafkaSink  # imports kafka-python only when configured

        sinks.append(("kafka", KafkaSink(config.kafka, observer)))
    return FanOut(sinks, observer)
