"""The ASR worker's consume -> decode -> publish -> commit logic, without a broker: a fake
consumer and producer record what it sends and commits, and in which order; the decoder is
the stub (:mod:`qa_pipeline.asr.stub`). The real broker: tests/integration/test_asr_worker_kafka.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from kafka.structs import TopicPartition

from qa_pipeline.asr.stub import STUB_SENTENCES, StubEngine, parse_stub
from qa_pipeline.asr_worker import AsrWorker, DeliveryError, wire_utterance
from qa_pipeline.messages import CallInfo, Role
from qa_pipeline.privacy import Redactor
from qa_pipeline.privacy.config import PrivacyConfig
from qa_pipeline.text import utterance
from qa_pipeline.wire import (
    LegEnd,
    LegStart,
    Watermark,
    WireMessage,
    WireSegment,
    WireUtterance,
    decode,
    encode,
)

IN = "qa.segments"


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes | None
    timestamp: int = 0


class Future:
    def __init__(self, log: list[tuple[str, Any]], idx: int, fail: bool = False) -> None:
        self.log, self.idx, self.fail = log, idx, fail

    def get(self, timeout: float) -> None:
        self.log.append(("ack", self.idx))
        if self.fail:
            raise TimeoutError("broker gone")


class Producer:
    def __init__(self, log: list[tuple[str, Any]], fail_at: int | None = None) -> None:
        self.log = log
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.fail_at = fail_at

    def send(self, topic: str, *, key: bytes, value: bytes, headers: Any) -> Future:
        self.sent.append((topic, key, value, headers))
        i = len(self.sent) - 1
        self.log.append(("send", i))
        return Future(self.log, i, fail=i == self.fail_at)

    def close(self, timeout: float = 0) -> None:
        pass


class Consumer:
    def __init__(
        self,
        log: list[tuple[str, Any]],
        batches: Iterable[dict[Any, list[Rec]]] = (),
        fail_commits: int = 0,
    ) -> None:
        self.log = log
        self.batches = list(batches)
        self.fail_commits = fail_commits
        self.committed: dict[Any, int] = {}

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, list[Rec]]:
        return self.batches.pop(0) if self.batches else {}

    def commit(self, offsets: dict[Any, Any], timeout_ms: int | None = None) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise RuntimeError("CommitFailedError: group rebalanced")
        self.log.append(("commit", {tp.partition: o.offset for tp, o in offsets.items()}))
        self.committed.update({tp: o.offset for tp, o in offsets.items()})

    def close(self) -> None:
        pass


def segment(call: str, ch: int, seq: int, start: float, dur: float = 0.6) -> WireSegment:
    n = int(round(dur * 16000))
    t = np.arange(n) / 16000
    pcm = (3000 * np.sin(2 * np.pi * (200 + 40 * seq + 10 * ch) * t)).astype(np.int16)
    return WireSegment.from_pcm(
        call_id=call, channel=ch, role=Role.AGENT if ch == 0 else Role.CUSTOMER, seq=seq,
        start=start, end=round(start + dur, 3), pcm=pcm, sample_rate=16000,
    )  # fmt: skip


def call_stream(call: str, n: int = 4) -> list[WireMessage]:
    """Two legs, ``n`` segments each (1 s apart), watermarks after each second, leg ends."""
    info = CallInfo(call_id=call, channels=(Role.AGENT, Role.CUSTOMER))
    msgs: list[WireMessage] = [
        LegStart(call_id=call, channel=ch, role=info.channels[ch], call=info) for ch in (0, 1)
    ]
    for seq in range(n):
        for ch in (0, 1):
            msgs.append(segment(call, ch, seq, seq + 0.2 * ch))
        for ch in (0, 1):
            msgs.append(Watermark(call_id=call, channel=ch, time=seq + 1.0))
    msgs += [LegEnd(call_id=call, channel=ch, end=n + 0.5) for ch in (0, 1)]
    return msgs


def records(partition: int, msgs: Sequence[WireMessage | bytes], first: int = 0) -> list[Rec]:
    out = []
    for i, m in enumerate(msgs):
        value = m if isinstance(m, bytes) else encode(m)
        key = b"x" if isinstance(m, bytes) else m.call_id.encode()
        out.append(Rec(IN, partition, first + i, key, value))
    return out


def worker(
    log: list[tuple[str, Any]], consumer: Consumer | None = None, **kw: Any
) -> tuple[AsrWorker, Producer]:
    producer = Producer(log, **kw)
    w = AsrWorker(consumer or Consumer(log), producer, StubEngine(), Redactor(PrivacyConfig()))
    return w, producer


def expected(msg: WireMessage) -> WireMessage:
    """What the utterances topic should carry for one segments-topic message."""
    if not isinstance(msg, WireSegment):
        return msg
    return wire_utterance(msg, StubEngine().transcribe_segment(msg.to_segment()), REDACTOR)


REDACTOR = Redactor(PrivacyConfig())


def test_each_partition_is_published_in_order_then_committed() -> None:
    log: list[tuple[str, Any]] = []
    a, b = call_stream("call-a"), call_stream("call-b", 3)
    tp0, tp1 = TopicPartition(IN, 0), TopicPartition(IN, 1)
    w, producer = worker(log)
    w.process({tp0: records(0, a), tp1: records(1, b, first=10)})
    sent = [decode(v) for _, _, v, _ in producer.sent]
    by_call = {c: [m for m in sent if m.call_id == c] for c in ("call-a", "call-b")}
    # the asr_seconds of a decode is wall time: compare without it
    norm = [
        (m.__class__, m.call_id, m.channel, getattr(m, "seq", None), getattr(m, "utterance", None))
        for m in sent
    ]
    assert norm == [
        (m.__class__, m.call_id, m.channel, getattr(m, "seq", None), getattr(m, "utterance", None))
        for m in map(expected, a + b)
    ]
    assert [type(m) for m in by_call["call-a"]] == [
        WireUtterance if isinstance(m, WireSegment) else type(m) for m in a
    ]
    assert all(topic == "qa.asr.utterances" for topic, *_ in producer.sent)
    assert all(
        key == m.call_id.encode() for (_, key, _, _), m in zip(producer.sent, sent, strict=True)
    )
    # the broker acknowledged everything before the commit, which covers both partitions
    assert log[-1] == ("commit", {0: len(a), 1: 10 + len(b)})
    assert {i for kind, i in log if kind == "ack"} == set(range(len(sent)))
    assert w.counts.segments == 14 and w.counts.passed_on == len(a) + len(b) - 14
    assert w.counts.utterances + w.counts.dropped == 14


def test_each_utterance_is_sent_as_soon_as_its_segment_is_decoded() -> None:
    """A batch's first utterance goes to the producer before its last segment is decoded
    (not after the whole batch: the latency of a busy worker); acks and commit still wait
    for all of them."""
    log: list[tuple[str, Any]] = []

    class Logged(StubEngine):
        def transcribe_segment(self, seg: Any) -> Any:
            log.append(("decode", seg.start))
            return super().transcribe_segment(seg)

    producer = Producer(log)
    w = AsrWorker(Consumer(log), producer, Logged(), REDACTOR)
    msgs = call_stream("call-a", 3)
    w.process({TopicPartition(IN, 0): records(0, msgs)})
    kinds = [k for k, _ in log]
    assert kinds.count("decode") == 6
    decodes = [i for i, k in enumerate(kinds) if k == "decode"]
    sends = [i for i, k in enumerate(kinds) if k == "send"]
    # each decode is followed by its utterance's send before the next decode
    for d, nxt in zip(decodes, decodes[1:], strict=False):
        assert any(d < s < nxt for s in sends)
    assert max(i for i, k in enumerate(kinds) if k == "ack") < kinds.index("commit")
    assert [type(decode(v)) for _, _, v, _ in producer.sent] == [
        WireUtterance if isinstance(m, WireSegment) else type(m) for m in msgs
    ]


def test_commits_at_most_every_interval_and_at_the_end() -> None:
    """With ``commit_interval_s``, batches inside the interval are published and
    acknowledged but committed together (the first batch at once, later ones once the
    interval has passed), and what is acknowledged is committed when the run ends."""
    log: list[tuple[str, Any]] = []
    a = call_stream("call-a", 3)
    tp = TopicPartition(IN, 0)
    stop = threading.Event()

    class Stopping(Consumer):
        def poll(self, timeout_ms: int, max_records: int) -> dict[Any, list[Rec]]:
            out = super().poll(timeout_ms, max_records)
            if not self.batches:
                stop.set()
            return out

    cuts = [0, 4, 8, 12, len(a)]
    consumer = Stopping(
        log, [{tp: records(0, a[x:y], first=x)} for x, y in zip(cuts, cuts[1:], strict=False)]
    )
    w = AsrWorker(consumer, Producer(log), StubEngine(), REDACTOR, commit_interval_s=0.3)
    commits = lambda: [x for x in log if x[0] == "commit"]  # noqa: E731
    w.process(consumer.poll(0, 32))
    assert commits() == [("commit", {0: 4})]  # the first at once
    w.process(consumer.poll(0, 32))
    assert commits() == [("commit", {0: 4})]  # inside the interval: acknowledged only
    time.sleep(0.35)
    w.process(consumer.poll(0, 32))
    assert commits() == [("commit", {0: 4}), ("commit", {0: 12})]  # the interval passed
    w.run(stop)  # the last batch, inside the interval, then the end of the run
    assert commits() == [("commit", {0: 4}), ("commit", {0: 12}), ("commit", {0: len(a)})]
    assert {i for kind, i in log if kind == "ack"} == set(range(len(a)))


def test_utterance_is_the_text_step_of_the_decode_with_seq_as_index() -> None:
    stub = StubEngine()
    seg = segment("call-x", 1, 7, 12.5)
    r = stub.transcribe_segment(seg.to_segment())
    got = wire_utterance(seg, r, REDACTOR)
    assert got.seq == 7 and got.channel == 1
    if r.dropped_reason:
        assert got.utterance is None and got.dropped == r.dropped_reason
    else:
        assert got.utterance == utterance(r, 7, REDACTOR)


def test_stub_texts_are_redacted_and_some_dropped() -> None:
    stub = StubEngine()
    outs = [
        wire_utterance(s, stub.transcribe_segment(s.to_segment()), REDACTOR)
        for s in (segment(f"c{i}", 0, 0, 1.0) for i in range(200))
    ]
    dropped = [o for o in outs if o.utterance is None]
    assert 5 <= len(dropped) <= 40 and {o.dropped for o in dropped} == {"hallucination"}
    phones = [o.utterance for o in outs if o.utterance and o.utterance.entities]
    assert phones, "the stub's sentence with a mobile number comes out redacted"
    for u in phones:
        assert "13812345678" not in u.text + u.raw_text
        assert u.entities[0].kind == "mobile"
    texts = {o.utterance.text for o in outs if o.utterance and not o.utterance.entities}
    assert texts <= set(STUB_SENTENCES) and len(texts) >= 5


def test_bad_records_are_skipped_counted_and_committed_past(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[tuple[str, Any]] = []
    msgs = call_stream("call-c", 2)
    stray = WireUtterance(call_id="call-c", channel=0, seq=0, dropped="hallucination")
    mixed: list[WireMessage | bytes] = [*msgs[:3], b"\x00not msgpack", encode(stray), *msgs[3:]]
    w, producer = worker(log)
    tp = TopicPartition(IN, 2)
    w.process({tp: records(2, mixed, first=100)})
    assert w.counts.bad == 2
    assert len(producer.sent) == len(msgs)
    assert log[-1] == ("commit", {2: 100 + len(mixed)})
    text = caplog.text
    assert "qa.segments-2 offset 103" in text and "qa.segments-2 offset 104" in text


def test_a_failed_delivery_commits_nothing() -> None:
    log: list[tuple[str, Any]] = []
    consumer = Consumer(log)
    w, _ = worker(log, consumer, fail_at=3)
    with pytest.raises(DeliveryError, match="did not acknowledge"):
        w.process({TopicPartition(IN, 0): records(0, call_stream("call-d", 2))})
    assert consumer.committed == {} and not [e for e in log if e[0] == "commit"]


def test_a_failed_commit_is_retried_when_the_partition_is_revoked() -> None:
    log: list[tuple[str, Any]] = []
    consumer = Consumer(log, fail_commits=1)
    w, _ = worker(log, consumer)
    tp = TopicPartition(IN, 0)
    msgs = call_stream("call-e", 1)
    w.process({tp: records(0, msgs)})
    assert w.counts.commit_failures == 1 and consumer.committed == {}
    w.on_revoked([tp])
    assert consumer.committed == {tp: len(msgs)}
    w.on_revoked([tp])  # nothing left: no second commit
    assert [e for e in log if e[0] == "commit"] == [("commit", {0: len(msgs)})]


def test_output_does_not_depend_on_the_batch() -> None:
    """One record per poll or all at once: the same messages, in the same order."""
    msgs = call_stream("call-f", 3) + call_stream("call-g", 2)
    recs = records(0, msgs)
    tp = TopicPartition(IN, 0)
    log: list[tuple[str, Any]] = []
    whole, p1 = worker(log)
    whole.process({tp: recs})
    single, p2 = worker(log)
    for r in recs:
        single.process({tp: [r]})

    def strip(values: list[Any]) -> list[Any]:  # asr_seconds aside (wall time)
        msgs = [decode(v) for _, _, v, _ in values]
        return [(m.call_id, m.channel, m.kind, getattr(m, "utterance", None)) for m in msgs]

    assert strip(p1.sent) == strip(p2.sent)


def test_run_stops_between_batches() -> None:
    log: list[tuple[str, Any]] = []
    stop = threading.Event()
    tp = TopicPartition(IN, 0)
    msgs = call_stream("call-h", 2)

    class StoppingConsumer(Consumer):
        def poll(self, timeout_ms: int, max_records: int) -> dict[Any, list[Rec]]:
            stop.set()  # a SIGTERM arriving while this batch is decoded
            return {tp: records(0, msgs)}

    consumer = StoppingConsumer(log)
    w, producer = worker(log, consumer)
    counts = w.run(stop)
    assert counts.batches == 1 and len(producer.sent) == len(msgs)
    assert consumer.committed == {tp: len(msgs)}


def test_parse_stub() -> None:
    assert parse_stub("stub").sleep == 0
    assert parse_stub("stub:sleep=0.05").sleep == 0.05
    for bad in ("stub:sleep=x", "stub:speed=2", "stub:sleep=-1", "whisperx"):
        with pytest.raises(ValueError):
            parse_stub(bad)


def test_a_broker_that_is_down_is_named_and_the_exit_status_is_1(tmp_path: Any) -> None:
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [sys.executable, "-m", "qa_pipeline.cli", "asr-worker", "--kafka", f"127.0.0.1:{port}",
         "--decoder", "stub"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert res.returncode == 1
    assert f"error: Kafka at 127.0.0.1:{port}" in res.stderr
    assert "Traceback" not in res.stderr


def test_metrics_lag_and_age_and_the_health_endpoints() -> None:
    import time
    import urllib.error
    import urllib.request

    from qa_pipeline.asr_worker import WorkerMetrics
    from qa_pipeline.stage_health import serve_health

    log: list[tuple[str, Any]] = []
    tp = TopicPartition(IN, 3)
    msgs = call_stream("call-m", 2)
    old = int((time.time() - 5) * 1000)
    recs = [Rec(r.topic, r.partition, r.offset, r.key, r.value, old) for r in records(3, msgs)]
    ends = {tp: len(msgs) + 7}  # 7 more records wait on the partition

    class LaggingConsumer(Consumer):
        def assignment(self) -> set[Any]:
            return {tp}

        def highwater(self, part: Any) -> int:
            return ends[part]

        def position(self, part: Any, timeout_ms: int) -> int:
            return self.committed.get(part, 0)

    metrics = WorkerMetrics("qa-asr")
    consumer = LaggingConsumer(log)
    w = AsrWorker(consumer, Producer(log), StubEngine(), REDACTOR, metrics=metrics)
    w.process({tp: recs})
    w.observe()
    reg = metrics.registry

    def value(name: str, **labels: str) -> float:
        got = reg.get_sample_value(name, labels)
        assert got is not None, name
        return got

    assert value("qa_consumer_lag", group="qa-asr", topic=IN, partition="3") == 7
    assert 4.5 < value("qa_oldest_unprocessed_age_seconds", group="qa-asr") < 60
    total = value("qa_asr_worker_segments_total", result="utterance") + value(
        "qa_asr_worker_segments_total", result="dropped"
    )
    assert total == w.counts.segments == 4
    ends[tp] = len(msgs)  # caught up
    w.observe()
    assert value("qa_consumer_lag", group="qa-asr", topic=IN, partition="3") == 0
    assert value("qa_oldest_unprocessed_age_seconds", group="qa-asr") == 0
    # the partition moves to another worker: this one stops reporting it (no stale lag
    # summed with the new owner's)
    tp_next = TopicPartition(IN, 5)
    ends[tp_next] = 2
    consumer.assignment = lambda: {tp_next}  # type: ignore[method-assign]
    w.observe()
    assert (
        reg.get_sample_value("qa_consumer_lag", {"group": "qa-asr", "topic": IN, "partition": "3"})
        is None
    )
    assert value("qa_consumer_lag", group="qa-asr", topic=IN, partition="5") == 2

    server = serve_health(metrics.registry, metrics.heartbeat, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.port}"
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            assert b"qa_consumer_lag{" in r.read()
        metrics.heartbeat.last -= 331  # the loop has not turned for longer than it may
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/healthz", timeout=5)
        assert e.value.code == 503
        assert e.value.read() == b"poll loop stalled for 331 s\n"
        w.observe()  # it turns again
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        server.stop()


def test_stub_in_process_equals_the_worker_path(tmp_path: Any) -> None:
    """``Pipeline(config, engine=StubEngine())`` scores a call in-process with the texts
    the stub workers produce from its ingested segments (8 kHz μ-law: the stub's text
    depends on the segment's times, not on how its audio was resampled)."""
    from qa_pipeline.audio import read_source
    from qa_pipeline.config import PipelineConfig
    from qa_pipeline.ingest import call_messages
    from qa_pipeline.pipeline import Pipeline
    from qa_pipeline.samples.generate import generate_call

    wav = generate_call("talk_over", tmp_path, rate=8000, encoding="ulaw")
    pipe = Pipeline(PipelineConfig(), engine=StubEngine())  # type: ignore[arg-type]
    expected = pipe.transcribe(wav).transcript.utterances
    prep = pipe.prepare(wav)
    source, rate = read_source(wav)
    log: list[tuple[str, Any]] = []
    w, producer = worker(log)
    w.process({TopicPartition(IN, 0): records(0, call_messages(prep, source, rate))})
    got = [decode(v) for _, _, v, _ in producer.sent]
    kept = sorted(
        (m.utterance for m in got if isinstance(m, WireUtterance) and m.utterance),
        key=lambda u: (u.start, u.channel),
    )
    assert len(kept) == len(expected) >= 3
    for a, b in zip(kept, expected, strict=True):
        assert (a.channel, a.start, a.end, a.text, a.raw_text, a.confidence, a.entities,
                a.level_dbfs, a.role) == (
            b.channel, b.start, b.end, b.text, b.raw_text, b.confidence, b.entities,
            b.level_dbfs, b.role,
        )  # fmt: skip


def test_stub_scores_in_process(tmp_path: Any) -> None:
    """``Pipeline.score`` biases the engine to the rule pack (``with_bias``): the stub takes
    the terms and keeps its texts, so a call scores in-process with the stub (the reference
    of the chain test) with the same utterances ``transcribe`` gives."""
    from qa_pipeline.config import PipelineConfig
    from qa_pipeline.pipeline import Pipeline
    from qa_pipeline.samples.generate import generate_call

    wav = generate_call("no_closing", tmp_path, rate=8000, encoding="ulaw")
    stub = StubEngine(sleep=0.0)
    biased = stub.with_bias(("华夏", "您好"))
    assert biased.bias == ("华夏", "您好") and stub.bias == () and biased.sleep == stub.sleep
    pipe = Pipeline(PipelineConfig(), engine=stub)  # type: ignore[arg-type]
    res = pipe.score(wav)
    assert res.scorecard is not None and res.scorecard.findings
    texts = [u.text for u in res.transcript.utterances]
    assert texts == [u.text for u in pipe.transcribe(wav).transcript.utterances]
    assert texts and all(any(t[:4] == s[:4] for s in STUB_SENTENCES) for t in texts)
