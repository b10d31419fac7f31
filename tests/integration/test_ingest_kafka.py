"""The segments topic through the real broker (``scripts/kafka.sh``, default limits):

* a 25 s speech segment (16 kHz 16-bit PCM, and 8 kHz μ-law) produced with the broker's and
  kafka-python's default message size limits and read back identical;
* ``qa-pipeline ingest`` run as its own process on two generated two-channel calls (espeak-ng
  + sox), as fast as it goes and paced (``--pace``): an independent consumer reads the topic
  and checks each call's legs, segments, sequence numbers, audio (bit for bit), watermarks
  and leg ends, all in one partition.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_checks import check_call_stream
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from qa_pipeline.messages import Role
from qa_pipeline.wire import LegEnd, WireMessage, WireSegment, decode, encode, headers

PARTITIONS = 4


def create_topic(bootstrap: str, topic: str, **security: Any) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **security)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        admin.close()


def read_topic(
    bootstrap: str, topic: str, done: Any, timeout: float = 60, **security: Any
) -> list[Any]:
    """Every record of ``topic`` from the beginning, until ``done(records)`` or the timeout."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="segments-checker",
        **security,
    )
    try:
        deadline = time.monotonic() + timeout
        ids = consumer.partitions_for_topic(topic)
        while not ids and time.monotonic() < deadline:
            time.sleep(0.5)
            consumer._client.cluster.request_update()
            ids = consumer.partitions_for_topic(topic)
        assert ids, f"topic {topic} does not exist"
        parts = [TopicPartition(topic, p) for p in sorted(ids)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        while time.monotonic() < deadline and not done(records):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def test_25_s_segment_through_the_broker(kafka_server: Any) -> None:
    topic = "wire.big-segments"
    create_topic(kafka_server.bootstrap, topic)
    rng = np.random.default_rng(25)
    sent: list[WireSegment] = []
    for rate, encoding in ((16000, "pcm_s16le"), (8000, "mulaw")):
        pcm = np.clip(rng.normal(0, 6000, 25 * rate), -32768, 32767).astype(np.int16)
        sent.append(
            WireSegment.from_pcm(
                call_id=f"big-{rate}",
                channel=0,
                role=Role.AGENT,
                seq=0,
                start=3.0,
                end=28.0,
                pcm=pcm,
                sample_rate=rate,
                encoding=encoding,  # type: ignore[arg-type]
            )
        )
    # kafka-python's defaults: max_request_size 1 MiB, like the broker's message.max.bytes
    producer = KafkaProducer(bootstrap_servers=kafka_server.bootstrap, acks="all")
    try:
        for seg in sent:
            meta = producer.send(
                topic, key=seg.call_id.encode(), value=encode(seg), headers=headers(seg)
            ).get(timeout=30)
            assert meta.serialized_value_size == len(encode(seg))
    finally:
        producer.close(timeout=10)
    records = read_topic(kafka_server.bootstrap, topic, lambda r: len(r) >= len(sent))
    got = {r.key.decode(): decode(r.value) for r in records}
    assert len(records) == len(sent)
    for seg in sent:
        back = got[seg.call_id]
        assert back == seg
        assert isinstance(back, WireSegment) and np.array_equal(back.pcm(), seg.pcm())


@pytest.mark.parametrize("pace", [0, 12])
def test_ingest_process_publishes_each_call_in_order(
    kafka_server: Any, tmp_path: Path, pace: int
) -> None:
    """As fast as the broker takes it, and replayed side by side at 12x real time (the two
    calls are about 50 s long)."""
    from qa_pipeline.samples.generate import generate_call

    calls = [
        generate_call("perfect", tmp_path / "a", rate=8000, encoding="ulaw"),
        generate_call("talk_over", tmp_path / "b", rate=16000, encoding="pcm16"),
    ]
    topic = f"ingest.segments.pace{pace}"
    create_topic(kafka_server.bootstrap, topic)
    root = Path(__file__).resolve().parents[2]
    args = ["--kafka", kafka_server.bootstrap, "--topic", topic, "--pace", str(pace)]
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "qa_pipeline.cli", "ingest", *map(str, calls), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert res.returncode == 0, res.stderr
    if pace:
        assert time.monotonic() - t0 > 48.6 / pace  # the longer call's end, paced
    summary = json.loads(res.stdout.strip().splitlines()[-1])["ingest"]
    assert summary["calls_delivered"] == 2 and summary["calls_undelivered"] == 0
    assert summary["leg_ends"] == 4

    def all_legs_ended(records: list[Any]) -> bool:
        return sum(dict(r.headers).get("type") == b"leg_end" for r in records) >= 4

    records = read_topic(kafka_server.bootstrap, topic, all_legs_ended)
    assert len(records) == summary["messages"], "every message exactly once"
    by_call: dict[str, list[WireMessage]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        msg = decode(r.value)
        assert r.key.decode() == msg.call_id
        assert dict(r.headers) == {"type": msg.kind.encode(), "v": b"1"}
        by_call[msg.call_id].append(msg)
        partitions[msg.call_id].add(r.partition)
    assert sorted(by_call) == ["perfect", "talk_over"]
    for wav in calls:
        call_id = wav.stem
        assert len(partitions[call_id]) == 1, "a call's messages stay in one partition"
        legs = check_call_stream(by_call[call_id], wav)
        assert sum(isinstance(m, LegEnd) for m in by_call[call_id]) == 2
        assert sum(len(s) for s in legs.values()) == sum(
            isinstance(m, WireSegment) for m in by_call[call_id]
        )
    assert summary["segments"] == sum(
        isinstance(m, WireSegment) for msgs in by_call.values() for m in msgs
    )


def test_ingest_over_sasl_ssl_with_the_pipeline_config(
    kafka_tls_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer takes TLS and SASL/SCRAM from ``sinks.kafka`` (password from the
    environment) like every other client; the broker has no plaintext listener."""
    from qa_pipeline.config import load_config
    from qa_pipeline.samples.generate import generate_call

    server = kafka_tls_server
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(
        "sinks:\n  kafka:\n"
        f"    bootstrap_servers: ['{server.bootstrap}']\n"
        "    security_protocol: SASL_SSL\n    sasl_mechanism: SCRAM-SHA-512\n"
        f"    sasl_plain_username: {server.user}\n"
        "    sasl_plain_password: '${QA_T_INGEST_PASSWORD}'\n"
        f"    ssl_cafile: '{server.ca_file}'\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("QA_T_INGEST_PASSWORD", server.password)
    kafka_cfg = load_config(cfg).sinks.kafka
    assert kafka_cfg is not None
    security = kafka_cfg.security().client_kwargs()
    topic = "tls.segments"
    create_topic(server.bootstrap, topic, **security)
    wav = generate_call("perfect", tmp_path, rate=8000, encoding="ulaw")
    root = Path(__file__).resolve().parents[2]
    args = ["--config", str(cfg), "--topic", topic]
    res = subprocess.run(
        [sys.executable, "-m", "qa_pipeline.cli", "ingest", str(wav), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},  # the password too (monkeypatch)
    )
    assert res.returncode == 0, res.stderr
    assert server.password not in res.stdout + res.stderr

    def ended(records: list[Any]) -> bool:
        return sum(dict(r.headers).get("type") == b"leg_end" for r in records) >= 2

    records = read_topic(server.bootstrap, topic, ended, **security)
    msgs = [decode(r.value) for r in sorted(records, key=lambda r: (r.partition, r.offset))]
    check_call_stream(msgs, wav)
