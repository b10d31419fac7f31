"""Issue 16 (transport) against a real broker whose only client listener is SASL_SSL
(TLS + SCRAM-SHA-512, certificates made by the fixture): the Kafka sink publishes over it,
the dashboard's feed consumes it, ``rescore --kafka`` reads the transcripts topic, all with
the settings of one pipeline config (``sinks.kafka``, the password from the environment).
A wrong password and a client without TLS are refused within seconds, with an error that
names the broker and the cause."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from replayed_calls import CALLS_DIR, replayed_events

from qa_pipeline.config import load_config
from qa_pipeline.dashboard.kafka_feed import KafkaFeed, consumer_kwargs_from_sink, topics_of
from qa_pipeline.dashboard.state import DashboardState
from qa_pipeline.kafka_security import KafkaConnectError, KafkaSecurity
from qa_pipeline.rescore.run import RescoreOptions, rescore
from qa_pipeline.rescore.sources import read_kafka_transcripts
from qa_pipeline.sinks.base import EventKind
from qa_pipeline.sinks.kafka import FATAL, KafkaSink

PREFIX = "tls."
KINDS = ("findings", "alerts", "scorecards", "transcripts", "utterances")


def pipeline_config(server: Any, tmp_path: Path, password_var: str) -> Path:
    topics = ", ".join(f"{k}: {PREFIX}{k}" for k in KINDS)
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "sinks:\n"
        "  kafka:\n"
        f"    bootstrap_servers: ['{server.bootstrap}']\n"
        "    security_protocol: SASL_SSL\n"
        "    sasl_mechanism: SCRAM-SHA-512\n"
        f"    sasl_plain_username: {server.user}\n"
        f"    sasl_plain_password: '${{{password_var}}}'\n"
        f"    ssl_cafile: '{server.ca_file}'\n"
        f"    topics: {{{topics}}}\n"
        f"    spool: {{directory: '{tmp_path / 'spool'}', sync: normal}}\n",
        encoding="utf-8",
    )
    return path


def test_every_client_speaks_sasl_ssl(
    kafka_tls_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = kafka_tls_server
    monkeypatch.setenv("QA_T_KAFKA_PASSWORD", server.password)
    cfg_path = pipeline_config(server, tmp_path, "QA_T_KAFKA_PASSWORD")
    kafka_cfg = load_config(cfg_path).sinks.kafka
    assert kafka_cfg is not None and kafka_cfg.security_protocol == "SASL_SSL"
    assert server.password not in repr(kafka_cfg)

    # the sink publishes every event of the test calls (scorecards among them)
    events = replayed_events()
    sink = KafkaSink(kafka_cfg)
    try:
        sink.emit_many(events)
        sink.flush(60)
        assert len(sink.spool) == 0, f"not delivered; sink errors {sink.errors}"
        assert sink.delivered == len(events) and not sink.errors
    finally:
        sink.close()
    scorecards = [e for e in events if e.kind is EventKind.SCORECARD]
    assert scorecards

    # the dashboard's feed consumes them with the same section's settings
    state = DashboardState()
    feed = KafkaFeed(
        state,
        topics_of(kafka_cfg.topics),
        consumer_kwargs_from_sink(kafka_cfg),
        from_beginning=True,
    ).start()
    try:
        deadline = time.monotonic() + 40
        while state.events_applied < len(events):
            assert time.monotonic() < deadline, (
                f"feed read {state.events_applied} of {len(events)} ({feed.last_error})"
            )
            time.sleep(0.2)
    finally:
        feed.stop()
    assert feed.errors == 0 and state.events_applied == len(events)
    direct = DashboardState()
    direct.apply_all(events)
    got = {c["call_id"]: c for c in state.snapshot()["calls"]}
    for want in direct.snapshot()["calls"]:
        assert want["final"]
        assert got[want["call_id"]]["score"] == want["score"]
        assert got[want["call_id"]]["grade"] == want["grade"]

    # rescore --kafka reads the transcripts topic with --config's sinks.kafka settings
    summary = rescore(
        RescoreOptions(
            kafka=server.bootstrap,
            topic=PREFIX + "transcripts",
            config=cfg_path,
            store=tmp_path / "qa.sqlite",
            out=tmp_path / "out",
            progress=False,
            workers=1,
            kafka_idle_timeout_s=15.0,
        )
    )
    n_calls = len(list(CALLS_DIR.glob("*.json")))
    assert summary.kafka["kept"] == n_calls
    rows = (tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(r)["call_id"] for r in rows} == set(got)

    # refused: a wrong password, a client without TLS (bounded, the broker named)
    good = kafka_cfg.security()
    wrong = good.model_copy(update={"sasl_plain_password": SecretStr("not-the-password")})
    cases = {
        "wrong password": (wrong, "authentication refused"),
        "no TLS": (
            KafkaSecurity(
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="SCRAM-SHA-512",
                sasl_plain_username=server.user,
                sasl_plain_password=server.password,
            ),
            "speaks TLS and this client does not",
        ),
    }
    for case, (security, cause) in cases.items():
        t0 = time.monotonic()
        with pytest.raises(KafkaConnectError) as refused:
            read_kafka_transcripts(server.bootstrap, PREFIX + "transcripts", security=security)
        took = time.monotonic() - t0
        message = str(refused.value)
        assert took < 15, (case, took)
        assert server.bootstrap in message and cause in message, (case, message)
        assert refused.value.settings, case
        assert server.password not in message and "not-the-password" not in message

    # the sink with a wrong password keeps its events and reports a settings failure
    caplog.set_level(logging.ERROR, logger="qa_pipeline.sinks.kafka")
    bad_cfg = kafka_cfg.model_copy(
        update={
            "sasl_plain_password": wrong.sasl_plain_password,
            "spool": kafka_cfg.spool.model_copy(update={"directory": str(tmp_path / "spool2")}),
            "max_block_ms": 3000,
            "close_timeout_s": 0.5,
        }
    )
    bad = KafkaSink(bad_cfg)
    try:
        bad.emit(scorecards[0])
        deadline = time.monotonic() + 20
        while not bad.errors.get(FATAL):
            assert time.monotonic() < deadline, f"no settings error reported: {bad.errors}"
            time.sleep(0.2)
        assert len(bad.spool) == 1 and bad.delivered == 0
    finally:
        bad.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert server.bootstrap in logged and "authentication refused" in logged
