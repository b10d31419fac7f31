"""The one Kafka security model every client uses: consistency checks, no plaintext to a
remote broker unless written, the password never in a repr or message, arguments that
kafka-python accepts, and a bootstrap failure that names the broker and the cause."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from qa_pipeline.config import load_config
from qa_pipeline.dashboard.kafka_feed import consumer_kwargs_from_sink, split_security
from qa_pipeline.kafka_security import (
    KafkaConnectError,
    KafkaSecurity,
    KafkaSecurityError,
    connect,
    is_local,
)
from qa_pipeline.sinks.kafka import KafkaSinkConfig

SCRAM = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_plain_username": "qa",
    "sasl_plain_password": "pw-31337",
    "ssl_cafile": "/etc/qa/ca.pem",
}


def test_local_addresses() -> None:
    for s in ("127.0.0.1:9092", "localhost:9092", "[::1]:9092", "127.0.0.2:1", "a.localhost:1"):
        assert is_local(s), s
    for s in ("kafka-1:9092", "10.0.0.5:9092", "[2001:db8::1]:9092", "localhost.evil.com:1"):
        assert not is_local(s), s


def test_remote_broker_needs_a_stated_protocol() -> None:
    with pytest.raises(ValidationError, match="not on this machine"):
        KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9092", "kafka-1:9092"))
    KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9092",))  # local: plaintext is fine
    explicit = KafkaSinkConfig(bootstrap_servers=("kafka-1:9092",), security_protocol="PLAINTEXT")
    assert explicit.security().protocol_stated  # the copy keeps "written"
    explicit.security().check_servers(["kafka-1:9092"])
    with pytest.raises(KafkaSecurityError, match="kafka-1:9092"):
        KafkaSinkConfig(bootstrap_servers=("127.0.0.1:1",)).security().check_servers(
            ["kafka-1:9092"]
        )
    KafkaSinkConfig.model_validate({"bootstrap_servers": ["kafka-1:9093"], **SCRAM})


def test_settings_are_consistent() -> None:
    with pytest.raises(ValidationError, match="needs sasl_mechanism"):
        KafkaSecurity(security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="needs username and password"):
        KafkaSecurity(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512")
    with pytest.raises(ValidationError, match="needs security_protocol SASL_SSL"):
        KafkaSecurity(security_protocol="SSL", sasl_mechanism="SCRAM-SHA-512")
    with pytest.raises(ValidationError, match="needs ssl_certfile"):
        KafkaSecurity(security_protocol="SSL", ssl_keyfile="/k.pem")
    KafkaSecurity(security_protocol="SSL", ssl_certfile="/cert-and-key.pem")
    with pytest.raises(ValidationError):
        KafkaSecurity.model_validate({**SCRAM, "sasl_password": "x"})  # unknown key


def test_password_only_in_the_client_arguments() -> None:
    kafka = pytest.importorskip("kafka")
    sec = KafkaSecurity.model_validate(SCRAM)
    assert "pw-31337" not in repr(sec) and "pw-31337" not in sec.describe()
    kw = sec.client_kwargs()
    assert kw["sasl_plain_password"] == "pw-31337" and kw["ssl_check_hostname"] is True
    for cls in (kafka.KafkaConsumer, kafka.KafkaProducer, kafka.KafkaAdminClient):
        assert set(kw) <= set(cls.DEFAULT_CONFIG), cls
    sink = KafkaSinkConfig.model_validate({"bootstrap_servers": ["k:9093"], **SCRAM})
    feed_kw = consumer_kwargs_from_sink(sink)
    assert set(feed_kw) <= set(kafka.KafkaConsumer.DEFAULT_CONFIG)
    servers, back, rest = split_security(feed_kw)
    assert servers == ["k:9093"] and back == sink.security() and "security_protocol" not in rest


def test_pipeline_config_section_with_env_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QA_T_KAFKA_PW", "pw-from-env")
    p = tmp_path / "p.yaml"
    p.write_text(
        "sinks:\n  kafka:\n    bootstrap_servers: [kafka-1:9093]\n"
        "    security_protocol: SASL_SSL\n    sasl_mechanism: SCRAM-SHA-512\n"
        "    sasl_plain_username: qa\n    sasl_plain_password: ${QA_T_KAFKA_PW}\n",
        encoding="utf-8",
    )
    kafka = load_config(p).sinks.kafka
    assert kafka is not None
    assert kafka.security().client_kwargs()["sasl_plain_password"] == "pw-from-env"
    assert "pw-from-env" not in repr(kafka)


def test_connect_names_the_broker_and_the_cause() -> None:
    def refused(**kw: Any) -> Any:  # what kafka-python does: log the reason, raise a timeout
        logging.getLogger("kafka.net.connection").error(
            "Connection lost: SaslAuthenticationFailedError: invalid credentials"
        )
        raise TimeoutError("Unable to bootstrap")

    sec = KafkaSecurity.model_validate(SCRAM)
    with pytest.raises(KafkaConnectError) as e:
        connect(refused, ["kafka-1:9093"], sec)
    msg = str(e.value)
    assert "kafka-1:9093" in msg and "wrong user name or password" in msg and e.value.settings
    assert "pw-31337" not in msg
    with pytest.raises(KafkaConnectError, match="not on this machine"):  # before any socket
        connect(refused, ["kafka-1:9093"], KafkaSecurity())


def test_admin_client_config_log_masks_the_password(caplog: pytest.LogCaptureFixture) -> None:
    def admin(**kw: Any) -> dict[str, Any]:  # kafka-python's admin client logs its config
        logging.getLogger("kafka.admin.client").debug("Starting with configuration: %s", kw)
        return kw

    caplog.set_level(logging.DEBUG, logger="kafka.admin.client")
    kw = connect(admin, ["kafka-1:9093"], KafkaSecurity.model_validate(SCRAM))
    assert kw["sasl_plain_password"] == "pw-31337"
    (record,) = [r for r in caplog.records if r.name == "kafka.admin.client"]
    assert "pw-31337" not in record.getMessage() and "**********" in record.getMessage()


def test_unreachable_broker_is_bounded() -> None:
    kafka = pytest.importorskip("kafka")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(KafkaConnectError) as e:
        connect(
            kafka.KafkaConsumer, [f"127.0.0.1:{port}"], KafkaSecurity(), bootstrap_timeout_ms=1000
        )
    assert f"127.0.0.1:{port}" in str(e.value) and not e.value.settings


@pytest.mark.parametrize("command", ["dashboard", "rescore"])
def test_clients_refuse_a_remote_broker_in_clear(command: str, tmp_path: Path) -> None:
    args = {
        "dashboard": ["--token", "t" * 32],
        "rescore": ["--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o"), "-q"],
    }[command]
    proc = subprocess.run(
        [sys.executable, "-m", "qa_pipeline.cli", command, "--kafka", "kafka-1:9092", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "kafka-1:9092 is not on this machine" in proc.stderr and "--config" in proc.stderr


def test_dashboard_config_without_a_protocol_does_not_open_a_remote_broker_in_clear(
    tmp_path: Path,
) -> None:
    """A config naming local brokers and no protocol, with --kafka naming a remote one."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sinks:\n  kafka:\n    bootstrap_servers: [127.0.0.1:9092]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "qa_pipeline.cli", "dashboard", "--config", str(cfg),
         "--kafka", "kafka-1:9092", "--token", "t" * 32],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "kafka-1:9092 is not on this machine" in proc.stderr


def test_replay_takes_tls_and_sasl_from_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa_pipeline import replay

    monkeypatch.setenv("KAFKA_PASSWORD", "pw-31337")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sinks:\n  kafka:\n    bootstrap_servers: [127.0.0.1:9092]\n"
        "    security_protocol: SASL_SSL\n    sasl_mechanism: SCRAM-SHA-512\n"
        "    sasl_plain_username: qa\n    sasl_plain_password: ${KAFKA_PASSWORD}\n"
        "    ssl_cafile: /etc/qa/ca.pem\n"
    )
    args = replay.parse_args(["--kafka", "kafka-1:9093", "--config", str(cfg)])
    kafka = replay.build_config(args).kafka
    assert kafka is not None and kafka.bootstrap_servers == ("kafka-1:9093",)
    assert kafka.security_protocol == "SASL_SSL" and kafka.sasl_plain_username == "qa"
    assert kafka.client_kwargs()["sasl_plain_password"] == "pw-31337"
    with pytest.raises(ValidationError, match="not on this machine"):  # no settings: refused
        replay.build_config(replay.parse_args(["--kafka", "kafka-1:9093"]))


def test_replay_quiets_kafka_python_at_its_handler_not_by_level() -> None:
    """replay hides kafka-python's lines at its own log handler: a level on the ``kafka``
    logger would also hide from the connection's diagnosis why a broker refused."""
    from qa_pipeline import replay

    def rec(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "x", None, None)

    assert not replay.quiet_kafka(rec("kafka.net.connection", logging.ERROR))
    assert not replay.quiet_kafka(rec("kafka", logging.WARNING))
    assert replay.quiet_kafka(rec("kafka", logging.CRITICAL))
    assert replay.quiet_kafka(rec("kafkaesque", logging.INFO))
    assert replay.quiet_kafka(rec("qa_pipeline.sinks", logging.WARNING))
    assert 'getLogger("kafka").setLevel' not in Path(replay.__file__).read_text()
