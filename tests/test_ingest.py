"""``qa-pipeline ingest`` without a broker: a generated two-channel call (espeak-ng + sox)
turned into its segments-topic messages, what the ASR would decode from them against what
``score`` decodes in-process, and the refusals (mono + auto roles, no broker, a broker that
does not answer or does not acknowledge). The broker itself: tests/integration/test_ingest_kafka.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr
from ingest_checks import check_call_stream
from typer.testing import CliRunner

from qa_pipeline.config import load_config
from qa_pipeline.ingest import (
    EXIT_UNDELIVERED,
    IngestError,
    IngestMetrics,
    SegmentPublisher,
    prepare_call,
    run_ingest,
    run_paced,
)
from qa_pipeline.pipeline import Pipeline
from qa_pipeline.sinks.kafka import KafkaSinkConfig
from qa_pipeline.stage_health import serve_health
from qa_pipeline.wire import LegEnd, LegStart, Watermark, WireSegment, decode, encode

KAFKA_MAX_MESSAGE_BYTES = 1_048_588


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from qa_pipeline.samples.generate import generate_call

    out = tmp_path_factory.mktemp("ingest-calls")
    return {
        "ulaw8k": generate_call("perfect", out / "ulaw8k", rate=8000, encoding="ulaw"),
        "pcm16k": generate_call("talk_over", out / "pcm16k", rate=16000, encoding="pcm16"),
    }


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(load_config(None))


@pytest.mark.parametrize("which", ["ulaw8k", "pcm16k"])
def test_call_becomes_ordered_legs_with_source_audio(
    which: str, calls: dict[str, Path], pipeline: Pipeline
) -> None:
    wav = calls[which]
    prep, msgs = prepare_call(pipeline, wav)
    for m in msgs:
        data = encode(m)
        assert len(data) < KAFKA_MAX_MESSAGE_BYTES
        assert decode(data) == m
    legs = check_call_stream(msgs, wav)
    segs = [s for ch in sorted(legs) for s in legs[ch]]
    assert {s.encoding for s in segs} == {"mulaw" if which == "ulaw8k" else "pcm_s16le"}
    # the same recording ingested again is the same session (downstream ids dedupe)
    again = prepare_call(pipeline, wav)[0].call
    assert again == prep.call and len(prep.call.session_id) == 32
    # one message per segment score would decode, same times
    assert sorted((s.channel, s.start, s.end) for s in segs) == sorted(
        (s.channel, s.start, s.end) for s in prep.segments
    )


def test_what_a_worker_decodes_is_what_score_decodes_bit_for_bit(
    calls: dict[str, Path], pipeline: Pipeline
) -> None:
    """What an ASR worker decodes (``to_segment``) against what ``score`` decodes: the very
    samples, 16 kHz PCM and 8 kHz μ-law alike. Below 16 kHz both resample the segment
    with the source around it (``audio.asr_cut``): resampling a slice alone differed by up
    to 0.002 at its edges, and Whisper read about half of the 8 kHz turns otherwise."""
    for which in ("pcm16k", "ulaw8k"):
        prep, msgs = prepare_call(pipeline, calls[which])
        mine = sorted(
            (decode(encode(m)).to_segment() for m in msgs if isinstance(m, WireSegment)),  # type: ignore[union-attr]
            key=lambda s: (s.channel, s.start),
        )
        theirs = sorted(prep.segments, key=lambda s: (s.channel, s.start))
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs, strict=True):
            assert (a.channel, a.start, a.end) == (b.channel, b.start, b.end)
            assert a.samples.dtype == b.samples.dtype and np.array_equal(a.samples, b.samples)


def test_source_above_16_khz_travels_at_16_khz(
    calls: dict[str, Path], pipeline: Pipeline, tmp_path: Path
) -> None:
    x, rate = sf.read(calls["pcm16k"], dtype="float32", always_2d=True)
    wav = tmp_path / "wide.wav"
    sf.write(wav, soxr.resample(x, rate, 44100), 44100, subtype="PCM_16")
    prep, msgs = prepare_call(pipeline, wav)
    segs = [m for m in msgs if isinstance(m, WireSegment)]
    assert segs and all(
        (s.sample_rate, s.source_rate, s.encoding) == (16000, 44100, "pcm_s16le") for s in segs
    )
    by_start = {(s.channel, s.start): s for s in prep.segments}
    for s in segs:
        ref = by_start[(s.channel, s.start)].samples
        assert np.array_equal(s.pcm(), np.round(ref.astype(np.float64) * 32768).astype(np.int16))


def test_session_named_by_the_metadata_is_kept_another_recording_is_another(
    calls: dict[str, Path], pipeline: Pipeline, tmp_path: Path
) -> None:
    x, rate = sf.read(calls["ulaw8k"], dtype="int16", always_2d=True)
    wav = tmp_path / "perfect.wav"
    sf.write(wav, x[:-8], rate, subtype="ULAW")  # the same call id, other audio
    assert (
        prepare_call(pipeline, wav)[0].call.session_id
        != prepare_call(pipeline, calls["ulaw8k"])[0].call.session_id
    )
    wav.with_suffix(".json").write_text(
        json.dumps({"call": {"call_id": "perfect", "session_id": "s-42"}}), encoding="utf-8"
    )
    prep, msgs = prepare_call(pipeline, wav)
    assert prep.call.session_id == "s-42"
    assert {m.call.session_id for m in msgs if isinstance(m, LegStart)} == {"s-42"}


def test_mono_recording_with_auto_roles_is_refused(
    calls: dict[str, Path], pipeline: Pipeline, tmp_path: Path
) -> None:
    x, rate = sf.read(calls["ulaw8k"], dtype="int16", always_2d=True)
    wav = tmp_path / "mono.wav"
    sf.write(wav, x[:, 0], rate, subtype="ULAW")
    with pytest.raises(IngestError, match="mono recording with audio.mono_roles: auto"):
        prepare_call(pipeline, wav)
    off = Pipeline(load_config(None, {"audio": {"mono_roles": "off"}}))
    _, msgs = prepare_call(off, wav)
    assert {m.channel for m in msgs} == {0}


# -- delivery --------------------------------------------------------------------------------


class _Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float) -> None:
        if self.error is not None:
            raise self.error


class _Producer:
    """Acknowledges the first ``ok_calls`` calls' records; then every record times out."""

    def __init__(self, ok_calls: int, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.ok_calls = ok_calls
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.keys: list[bytes] = []

    def send(self, topic: str, *, key: bytes, value: bytes, headers: Any) -> _Future:
        if key not in self.keys:
            self.keys.append(key)
        self.sent.append((topic, key, value, headers))
        late = len(self.keys) > self.ok_calls
        return _Future(TimeoutError("no acknowledgement") if late else None)

    def close(self, timeout: float) -> None:
        pass


def test_a_call_the_broker_does_not_acknowledge_stops_the_run_counted(
    calls: dict[str, Path], pipeline: Pipeline
) -> None:
    made: list[_Producer] = []

    def factory(**kw: Any) -> _Producer:
        made.append(_Producer(1, **kw))
        return made[-1]

    pub = SegmentPublisher(
        KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9",)), "t.segments", factory
    )
    kw = made[0].kwargs
    assert kw["acks"] == "all" and kw["enable_idempotence"] is True
    errors: list[str] = []
    paths = [calls["ulaw8k"], calls["pcm16k"], calls["ulaw8k"]]
    counts = run_ingest(pipeline, pub, paths, on_error=errors.append)
    assert (counts.calls, counts.calls_delivered, counts.calls_undelivered) == (3, 1, 2)
    assert counts.undelivered == [str(p) for p in paths[1:]]
    assert len(errors) == 1
    assert (
        "Kafka at 127.0.0.1:9 did not acknowledge call talk_over on topic t.segments" in (errors[0])
    )
    first = [s for s in made[0].sent if s[1] == b"perfect"]
    assert counts.messages == len(first) and counts.bytes == sum(len(s[2]) for s in first)
    assert all(t == "t.segments" for t, *_ in made[0].sent)
    assert [h for *_, h in first[:1]] == [[("type", b"leg_start"), ("v", b"1")]]


def test_unreadable_recording_is_reported_and_skipped(
    calls: dict[str, Path], pipeline: Pipeline, tmp_path: Path
) -> None:
    made: list[_Producer] = []

    def factory(**kw: Any) -> _Producer:
        made.append(_Producer(10, **kw))
        return made[-1]

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    pub = SegmentPublisher(KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9",)), "t", factory)
    errors: list[str] = []
    counts = run_ingest(pipeline, pub, [empty, calls["pcm16k"]], on_error=errors.append)
    assert (counts.calls, counts.inputs_refused, counts.calls_delivered) == (2, 1, 1)
    assert errors == [f"{empty}: file is empty (0 bytes)"]
    assert made[0].keys == [b"talk_over"]


@pytest.fixture
def runner() -> Iterator[CliRunner]:
    yield CliRunner()


def test_cli_without_a_broker_says_so(calls: dict[str, Path], runner: CliRunner) -> None:
    from qa_pipeline.cli import app

    res = runner.invoke(app, ["ingest", str(calls["ulaw8k"])])
    assert res.exit_code == 2
    assert "error: no broker: give --kafka HOST:PORT or sinks.kafka in --config" in res.output


def test_cli_broker_down_is_a_clear_error_and_nonzero_exit(
    calls: dict[str, Path], runner: CliRunner, tmp_path: Path
) -> None:
    import socket

    from qa_pipeline.cli import app

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(  # --kafka overrides the brokers, the other settings stay
        "sinks:\n  kafka:\n    bootstrap_servers: ['kafka.invalid:9092']\n"
        "    security_protocol: PLAINTEXT\n    max_block_ms: 1000\n",
        encoding="utf-8",
    )
    args = ["--config", str(cfg), "--kafka", f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    res = runner.invoke(app, ["ingest", str(calls["ulaw8k"]), *args])
    assert time.monotonic() - t0 < 4.5  # max_block_ms kept (the default waits 5 s)
    assert res.exit_code == EXIT_UNDELIVERED, res.output
    assert f"error: Kafka at 127.0.0.1:{port} (PLAINTEXT): broker down or unreachable" in (
        res.output
    )


def test_cli_health_port_taken_is_a_clear_error(calls: dict[str, Path], runner: CliRunner) -> None:
    import socket

    from qa_pipeline.cli import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        args = ["--kafka", "127.0.0.1:9", "--health-port", str(port)]
        res = runner.invoke(app, ["ingest", str(calls["ulaw8k"]), *args])
    assert res.exit_code == 2, res.output
    assert f"error: --health-port {port}:" in res.output


# -- paced replay ------------------------------------------------------------------------------


class _Clock:
    """Virtual time: ``sleep`` advances it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        assert s > 0
        self.now += s


def test_paced_replay_sends_each_message_when_its_call_clock_comes(
    calls: dict[str, Path], pipeline: Pipeline
) -> None:
    clock = _Clock()
    made: list[_Producer] = []
    sent_at: list[float] = []

    class Timed(_Producer):
        def send(self, topic: str, *, key: bytes, value: bytes, headers: Any) -> _Future:
            sent_at.append(clock.now - 100.0)
            return super().send(topic, key=key, value=value, headers=headers)

    def factory(**kw: Any) -> _Producer:
        made.append(Timed(10, **kw))
        return made[-1]

    pub = SegmentPublisher(KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9",)), "t", factory)
    paths = [calls["ulaw8k"], calls["pcm16k"]]
    pace = 4.0
    counts = run_paced(pipeline, pub, paths, pace=pace, sleep=clock.sleep, clock=clock)
    assert (counts.calls_delivered, counts.calls_undelivered) == (2, 0)
    sent = [(t, decode(v)) for t, (_, _, v, _) in zip(sent_at, made[0].sent, strict=True)]
    for path in paths:
        _, plain = prepare_call(pipeline, path)
        mine = [(t, m) for t, m in sent if m.call_id == path.stem]
        # the same messages, and each leg in the same order as unpaced
        for ch in (0, 1):
            assert [m for _, m in mine if m.channel == ch] == [m for m in plain if m.channel == ch]
        check_call_stream([m for _, m in mine], path)
        for t, m in mine:
            if isinstance(m, WireSegment):  # published once the VAD would have closed it
                assert t >= m.end / pace - 1e-9
            elif isinstance(m, Watermark):
                assert t >= m.time / pace - 1e-9
        # a leg's watermarks go out as its clock runs, never all at once at the end
        marks = [t for t, m in mine if isinstance(m, Watermark) and m.channel == 1]
        assert len(marks) > 20 and marks[0] < 1.0 and marks[-1] > 40 / pace
    # both calls ran side by side from the start
    assert {m.call_id for _, m in sent[:4]} == {"perfect", "talk_over"}
    longest = max(m.end for _, m in sent if isinstance(m, LegEnd))
    assert sent_at[-1] == pytest.approx(longest / pace, abs=0.01)


# -- metrics, health, stop ---------------------------------------------------------------------


def _sample(metrics: IngestMetrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    assert got is not None, name
    return got


def test_metrics_count_what_was_published_and_the_health_port_serves_them(
    calls: dict[str, Path], pipeline: Pipeline
) -> None:
    import urllib.request

    metrics = IngestMetrics()
    made: list[_Producer] = []

    def factory(**kw: Any) -> _Producer:
        made.append(_Producer(1, **kw))
        return made[-1]

    pub = SegmentPublisher(
        KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9",)), "t", factory, metrics=metrics
    )
    empty = calls["ulaw8k"].parent / "empty.wav"
    empty.write_bytes(b"")
    try:
        paths = [empty, calls["ulaw8k"], calls["pcm16k"], calls["ulaw8k"]]
        counts = run_ingest(pipeline, pub, paths)
    finally:
        empty.unlink()
    sent = [decode(v) for _, _, v, _ in made[0].sent]  # 2 calls sent, the 2nd not acknowledged
    assert {m.call_id for m in sent} == {"perfect", "talk_over"}

    def n(kind: type) -> int:
        return sum(isinstance(m, kind) for m in sent)

    assert _sample(metrics, "qa_ingest_segments_total") == n(WireSegment) > 0
    assert _sample(metrics, "qa_ingest_watermarks_total") == n(Watermark) > 0
    assert _sample(metrics, "qa_ingest_legs_started_total") == n(LegStart) == 4
    assert _sample(metrics, "qa_ingest_legs_ended_total") == n(LegEnd) == 4
    assert _sample(metrics, "qa_ingest_bytes_total") == sum(len(v) for _, _, v, _ in made[0].sent)
    assert _sample(metrics, "qa_ingest_publish_errors_total") == 1
    assert (counts.inputs_refused, counts.calls_delivered, counts.calls_undelivered) == (1, 1, 2)
    for result, want in (("refused", 1), ("delivered", 1), ("undelivered", 2)):
        assert _sample(metrics, "qa_ingest_calls_total", result=result) == want
    assert _sample(metrics, "qa_ingest_open_legs") == _sample(metrics, "qa_ingest_open_calls") == 0
    # the VAD ran over both channels of the two calls read (seconds of audio)
    seconds = sum(sf.info(calls[w]).duration * 2 for w in ("ulaw8k", "pcm16k"))
    assert _sample(metrics, "qa_ingest_vad_audio_seconds_total") == pytest.approx(seconds, rel=0.01)
    assert _sample(metrics, "qa_ingest_prepare_seconds_total") > 0

    server = serve_health(metrics.registry, metrics.heartbeat, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            body = r.read().decode()
        assert f"qa_ingest_segments_total {float(n(WireSegment))}" in body
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as r:
            assert r.read() == b"ok\n"
    finally:
        server.stop()


def test_a_stop_mid_replay_leaves_legs_open_and_names_the_calls_undelivered(
    calls: dict[str, Path], pipeline: Pipeline
) -> None:
    """SIGTERM (the stop event) during a paced replay: the replay ends at once, the calls
    not sent to their end are undelivered (named: run them again), and the open-legs gauge
    shows the legs that were started and never ended."""
    import threading

    clock = _Clock()
    stop = threading.Event()
    metrics = IngestMetrics()

    class Stopping(_Producer):
        def send(self, topic: str, *, key: bytes, value: bytes, headers: Any) -> _Future:
            if len(self.sent) == 9:
                stop.set()  # the signal comes while the 10th message goes out
            return super().send(topic, key=key, value=value, headers=headers)

    pub = SegmentPublisher(
        KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9",)),
        "t",
        lambda **kw: Stopping(10, **kw),
        metrics=metrics,
    )
    errors: list[str] = []
    paths = [calls["ulaw8k"], calls["pcm16k"]]
    counts = run_paced(
        pipeline, pub, paths, sleep=clock.sleep, clock=clock, stop=stop, on_error=errors.append
    )
    assert (counts.calls_delivered, counts.calls_undelivered) == (0, 2)
    assert counts.undelivered == [str(p) for p in paths]
    assert errors == ["replay stopped by a signal: calls not sent to their end are undelivered"]
    assert _sample(metrics, "qa_ingest_open_legs") == 4  # both legs of both calls started
    assert _sample(metrics, "qa_ingest_open_calls") == 2
    assert _sample(metrics, "qa_ingest_calls_total", result="undelivered") == 2
    assert _sample(metrics, "qa_ingest_publish_errors_total") == 0  # the broker was fine
    # stopped before the first call: nothing is read, every call named
    counts = run_ingest(pipeline, pub, paths, stop=stop, on_error=errors.append)
    assert (counts.calls_delivered, counts.calls_undelivered) == (0, 2)
    assert counts.undelivered == [str(p) for p in paths]
    assert errors[-1] == f"stopped before {paths[0]}: not sent"
    counts = run_paced(pipeline, pub, paths, stop=stop)
    assert (counts.calls_delivered, counts.calls_undelivered) == (0, 2)
