"""Kafka sink without a broker: config, error classes, back-off, spooling while unreachable."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from qa_pipeline.metrics import PipelineMetrics
from qa_pipeline.sinks import events_for_call
from qa_pipeline.sinks.kafka import (
    FATAL,
    REJECT,
    RETRY,
    Backoff,
    KafkaSinkConfig,
    SpoolConfig,
    classify,
    stage_kafka_config,
)

kafka = pytest.importorskip("kafka")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_config_forbids_unknown_keys_and_checks_sasl() -> None:
    with pytest.raises(ValueError):
        KafkaSinkConfig.model_validate({"bootstrap_servers": ["b:9092"], "ack": "all"})
    with pytest.raises(ValueError, match="sasl_mechanism"):
        KafkaSinkConfig(bootstrap_servers=("b:9092",), security_protocol="SASL_SSL")
    with pytest.raises(ValueError, match="username"):
        KafkaSinkConfig(
            bootstrap_servers=("b:9092",),
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
        )
    cfg = KafkaSinkConfig(
        bootstrap_servers=("b:9092",),
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_plain_username="qa",
        sasl_plain_password="s3cret",  # type: ignore[arg-type]
        ssl_cafile="/etc/ca.pem",
    )
    assert "s3cret" not in repr(cfg)
    kw = cfg.producer_kwargs()
    assert kw["sasl_plain_password"] == "s3cret" and kw["acks"] == "all"
    assert kw["enable_idempotence"] is True and kw["ssl_cafile"] == "/etc/ca.pem"


def test_stage_kafka_config_overrides_only_the_brokers() -> None:
    """``--kafka`` of ingest, asr-worker and evaluate: the brokers replaced, the section's
    other settings kept; the brokers alone without a section; neither is an error."""
    from qa_pipeline.errors import QAError

    section = KafkaSinkConfig.model_validate(
        {
            "bootstrap_servers": ["old:9092"],
            "security_protocol": "PLAINTEXT",
            "client_id": "site-a",
            "delivery_timeout_ms": 60_000,
        }
    )
    got = stage_kafka_config(section, " new1:9092, new2:9093 ")
    assert got.bootstrap_servers == ("new1:9092", "new2:9093")
    assert (got.client_id, got.delivery_timeout_ms) == ("site-a", 60_000)
    assert got.security_protocol == "PLAINTEXT"
    assert stage_kafka_config(section, None) is section
    bare = stage_kafka_config(None, "127.0.0.1:9092")
    assert bare == KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9092",))
    with pytest.raises(QAError, match="no broker: give --kafka"):
        stage_kafka_config(None, None)
    # the overridden brokers are checked as the section's own are (clear text off-host)
    with pytest.raises(ValueError, match="not on this machine"):
        stage_kafka_config(None, "far.example:9092")


def test_producer_kwargs_are_accepted_by_kafka_python() -> None:
    accepted = set(kafka.KafkaProducer.DEFAULT_CONFIG)
    kw = KafkaSinkConfig(
        bootstrap_servers=("b:9092",), security_protocol="PLAINTEXT"
    ).producer_kwargs()
    assert set(kw) <= accepted


def test_classify() -> None:
    e = kafka.errors
    assert classify(e.KafkaTimeoutError("x")) == RETRY
    assert classify(e.KafkaConnectionError("x")) == RETRY
    assert classify(e.RequestTimedOutError()) == RETRY
    assert classify(e.MessageSizeTooLargeError()) == REJECT
    assert classify(e.TopicAuthorizationFailedError()) == FATAL
    assert classify(e.SaslAuthenticationFailedError()) == FATAL
    assert classify(ValueError("bug")) == FATAL


def test_backoff_is_exponential_and_bounded() -> None:
    b = Backoff(0.1, 2.0)
    delays = [b.next_delay() for _ in range(10)]
    assert 0.08 <= delays[0] <= 0.12 and 0.16 <= delays[1] <= 0.24
    assert max(delays) <= 2.0 * 1.2 and delays[-1] >= 2.0 * 0.8
    b.reset()
    assert b.next_delay() <= 0.12


def test_unreachable_broker_keeps_events_spooled(
    tmp_path: Path, call_data: Callable[[str], Any], caplog: pytest.LogCaptureFixture
) -> None:
    from qa_pipeline.sinks.kafka import KafkaSink

    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    bootstrap = f"127.0.0.1:{_free_port()}"
    cfg = KafkaSinkConfig(
        bootstrap_servers=(bootstrap,),
        max_block_ms=300,
        request_timeout_ms=1000,
        delivery_timeout_ms=2000,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        close_timeout_s=0.5,
        spool=SpoolConfig(directory=str(tmp_path / "spool"), sync="normal"),
    )
    events = events_for_call(*call_data("call-001"))
    with caplog.at_level(logging.WARNING, logger="qa_pipeline.sinks.kafka"):
        sink = KafkaSink(cfg, metrics)
        for ev in events:
            sink.emit(ev)  # never blocks on the broker
        sink.flush(1.5)
        sink.close()
    assert any(bootstrap in r.getMessage() for r in caplog.records)
    assert registry.get_sample_value("qa_spool_events", {"sink": "kafka"}) == len(events)
    errors = registry.get_sample_value("qa_sink_errors_total", {"sink": "kafka", "reason": RETRY})
    assert errors is not None and errors >= 1
    # the spool survives for the next run, in order
    from qa_pipeline.sinks import Event, Spool

    sp = Spool(tmp_path / "spool")
    assert [Event.from_json(r.value).event_id for r in sp.peek(1000)] == [
        e.event_id for e in events
    ]
    sp.close()
