"""``qa-pipeline ingest``: recorded calls → VAD → speech segments on Kafka (the first stage).

Each recording is read and segmented exactly as ``score`` does it (``Pipeline.prepare``:
decode, channel → role, VAD per channel, a channel's segments joined into turns); every
speech segment becomes one :class:`~qa_pipeline.wire.WireSegment` with its audio at the
source's rate, published to the segments topic keyed by call id, together with each leg's
start, clock watermarks every :data:`WATERMARK_STEP_S` of call clock and its end
(:mod:`qa_pipeline.wire`; topics in ``deploy/README.md``, "Stages on Kafka").

The producer is built from the pipeline config's ``sinks.kafka`` section (TLS, SASL,
timeouts; ``--kafka`` overrides the brokers) with ``acks=all`` and the idempotent producer.
A call counts as delivered only when the broker acknowledged every one of its messages.
Nothing is spooled: a broker that cannot be reached, or that does not acknowledge a call in
``delivery_timeout_ms``, stops the run with an ``error:`` line naming the broker and the
calls not delivered, and exit status 1 (run it again: readers de-duplicate segments by
call id, channel and ``seq``). A recording that cannot be read is reported and skipped
(exit status 2 at the end). Counts go to stdout as one JSON line. SIGTERM or SIGINT stops
the run between calls (paced: between messages): what was sent is awaited, the calls not
sent to their end are named as undelivered (exit status 1). ``--health-port`` serves
``/healthz`` and ``/metrics`` (:class:`IngestMetrics`) while the run lasts.

``--pace N`` replays the recordings side by side as live lines at N times real time
(:func:`run_paced`). Recordings only (files or directories of them); live sources are not
ingested yet. A mono
recording with ``audio.mono_roles: auto`` is refused: naming its two voices needs the whole
call's transcript, which no single stage has.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from .audio import TARGET_RATE, asr_cut, channel_end, read_source
from .callinfo import read_call_info, sidecar_path
from .cli_errors import EXIT_CONFIG, fail
from .errors import QAError
from .kafka_security import CLIENT_KEYS, KafkaConnectError, connect
from .messages import CallInfo, replace
from .pipeline import Pipeline, PreparedCall, audio_sha256
from .sinks.kafka import KafkaSinkConfig, stage_kafka_config
from .stage_health import Heartbeat, serve_health, stop_on_signals
from .wire import (
    MAX_WIRE_RATE,
    LegEnd,
    LegStart,
    Watermark,
    WireMessage,
    WireSegment,
    encode,
    headers,
)

log = logging.getLogger("qa_pipeline.ingest")

DEFAULT_TOPIC = "qa.segments"
#: the longest stretch of call clock between two watermarks of a leg
WATERMARK_STEP_S = 0.5
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus")
#: exit status when the broker did not take every call
EXIT_UNDELIVERED = 1
#: ``/healthz`` answers 503 when the loop has not turned for this long (one recording's
#: VAD, or one call's acknowledgements: ``delivery_timeout_ms``, take less)
STALL_S = 120.0


class IngestError(QAError):
    """A call that cannot be ingested (not a delivery problem)."""


def session_for(call: CallInfo, path: Path) -> str:
    """The call's session: the ``session_id`` its metadata file names, else 32 hex digits
    derived from the call id and the audio's SHA-256, so ingesting the same recording again
    is the same session (downstream event ids, derived from it, de-duplicate) while another
    recording under a recurring call id is another session."""
    side = sidecar_path(path)
    if side.is_file() and side != path:
        doc = json.loads(side.read_text(encoding="utf-8"))  # read_call_info checked it
        named = doc.get("call", {}).get("session_id") if isinstance(doc, dict) else None
        if isinstance(named, str) and named:
            return named
    digest = audio_sha256(path)
    return hashlib.sha256(f"{call.call_id}\x1f{digest}".encode()).hexdigest()[:32]


def _pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(
        np.int16
    )


def call_messages(
    prep: PreparedCall,
    source: np.ndarray,
    source_rate: int,
    *,
    step_s: float = WATERMARK_STEP_S,
) -> list[WireMessage]:
    """A recorded call's messages in publishing order (see :mod:`qa_pipeline.wire`).

    ``source``: the recording at its own rate (frames x channels, float32; :func:`read_source`).
    A segment's audio is cut from it at the segment's first sample and with the segment's
    length; at 16 kHz that is the source's samples (the very samples the in-process ASR
    decodes), below it the same with the source around it that the recorded path resamples
    the segment with (``audio.asr_cut``: a worker decodes the same samples bit for bit),
    above 16 kHz the 16 kHz samples the VAD cut. μ-law sources
    travel as μ-law, others as 16-bit PCM."""
    if step_s <= 0:
        raise ValueError("step_s must be > 0")
    audio, info = prep.audio, prep.call
    fmt = audio.source_format.upper()
    downsampled = source_rate > MAX_WIRE_RATE
    wire_rate = MAX_WIRE_RATE if downsampled else source_rate
    encoding = "mulaw" if fmt.endswith("ULAW") and not downsampled else "pcm_s16le"
    # (time, rank, channel, index): watermark t before a segment starting at t, leg end last
    keyed: list[tuple[tuple[float, int, int, int], WireMessage]] = []
    starts: list[WireMessage] = []
    for ch, samples in enumerate(audio.channels):
        role = info.channels[ch] if ch < len(info.channels) else audio.roles[ch]
        starts.append(LegStart(call_id=info.call_id, channel=ch, role=role, call=info))
        segs = sorted((s for s in prep.segments if s.channel == ch), key=lambda s: s.start)
        last = 0.0
        for seq, seg in enumerate(segs):
            extra: dict[str, int] = {}
            if downsampled:
                pcm = _pcm16(seg.samples)
            elif source_rate < TARGET_RATE:
                # the segment and the source around it that the recorded path resamples it
                # with (audio.asr_cut): the worker decodes the very same samples
                start16 = round(seg.start * TARGET_RATE)
                cut = asr_cut(source_rate, len(source), start16, len(seg.samples))
                i0 = start16 * source_rate // TARGET_RATE
                n = int(round(len(seg.samples) * source_rate / TARGET_RATE))
                pcm = _pcm16(source[cut.a : cut.b, ch])
                extra = {
                    "context_before": i0 - cut.a,
                    "context_after": max(0, cut.b - (i0 + n)),
                    "trim16": cut.trim,
                    "keep16": cut.keep,
                }
            else:
                i0 = int(round(seg.start * source_rate))
                n = int(round(len(seg.samples) * source_rate / seg.sample_rate))
                pcm = _pcm16(source[i0 : i0 + n, ch])
            msg = WireSegment.from_pcm(
                call_id=info.call_id,
                channel=ch,
                role=seg.role,
                seq=seq,
                start=seg.start,
                end=seg.end,
                pcm=pcm,
                sample_rate=wire_rate,
                source_rate=source_rate,
                encoding=encoding,  # type: ignore[arg-type]
                **extra,
            )
            keyed.append(((seg.start, 1, ch, seq), msg))
            last = max(last, seg.start)
        end = round(channel_end(samples, TARGET_RATE), 3)
        k = 1
        while (t := round(k * step_s, 3)) < end:
            keyed.append(((t, 0, ch, k), Watermark(call_id=info.call_id, channel=ch, time=t)))
            k += 1
        keyed.append(
            ((max(end, last), 2, ch, 0), LegEnd(call_id=info.call_id, channel=ch, end=end))
        )
    keyed.sort(key=lambda km: km[0])
    return [*starts, *(m for _, m in keyed)]


@dataclass
class IngestCounts:
    calls: int = 0
    calls_delivered: int = 0
    calls_undelivered: int = 0
    inputs_refused: int = 0
    segments: int = 0
    watermarks: int = 0
    leg_ends: int = 0
    messages: int = 0
    bytes: int = 0
    undelivered: list[str] = field(default_factory=list)

    def add(self, msgs: Sequence[WireMessage], sizes: int) -> None:
        self.calls_delivered += 1
        self.segments += sum(isinstance(m, WireSegment) for m in msgs)
        self.watermarks += sum(isinstance(m, Watermark) for m in msgs)
        self.leg_ends += sum(isinstance(m, LegEnd) for m in msgs)
        self.messages += len(msgs)
        self.bytes += sizes


class IngestMetrics:
    """Ingest's Prometheus metrics (own registry; ``--health-port`` serves them with
    ``/healthz``, :func:`~qa_pipeline.stage_health.serve_health`). Messages count when the
    producer takes them (a call the broker then does not acknowledge is a publish error and
    an ``undelivered`` call):

    ======================================  ======= ==========================================
    qa_ingest_calls_total{result}           counter recordings: ``delivered``, ``undelivered``
                                                    (not acknowledged in full, or not sent:
                                                    the run stopped), ``refused`` (unreadable,
                                                    mono with auto roles)
    qa_ingest_segments_total                counter speech segments published
    qa_ingest_watermarks_total              counter watermarks published
    qa_ingest_legs_started_total            counter leg starts published
    qa_ingest_legs_ended_total              counter leg ends published
    qa_ingest_bytes_total                   counter bytes of the messages published
    qa_ingest_publish_errors_total          counter a call's send refused or not acknowledged
                                                    in ``delivery_timeout_ms``
    qa_ingest_vad_audio_seconds_total       counter audio run through the VAD (each channel)
    qa_ingest_prepare_seconds_total         counter wall time reading and segmenting calls
    qa_ingest_open_legs                     gauge   legs started and not yet ended
    qa_ingest_open_calls                    gauge   calls with a leg started and not ended
    ======================================  ======= ==========================================

    Open legs and calls are totals, not a series per call id: a label per call would add a
    series to Prometheus for every call ever ingested.
    """

    def __init__(self, stall_s: float = STALL_S) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = r = CollectorRegistry()
        #: ``/healthz``: 503 when the loop has not turned for ``stall_s``
        self.heartbeat = Heartbeat(stall_s, "ingest loop")
        self.calls = Counter("qa_ingest_calls", "Recordings by outcome", ["result"], registry=r)
        for result in ("delivered", "undelivered", "refused"):
            self.calls.labels(result)
        self.segments = Counter("qa_ingest_segments", "Speech segments published", registry=r)
        self.watermarks = Counter("qa_ingest_watermarks", "Watermarks published", registry=r)
        self.legs_started = Counter("qa_ingest_legs_started", "Leg starts published", registry=r)
        self.legs_ended = Counter("qa_ingest_legs_ended", "Leg ends published", registry=r)
        self.bytes = Counter("qa_ingest_bytes", "Bytes of the messages published", registry=r)
        self.publish_errors = Counter(
            "qa_ingest_publish_errors",
            "Calls whose messages the producer refused or the broker did not acknowledge",
            registry=r,
        )
        self.vad_audio_seconds = Counter(
            "qa_ingest_vad_audio_seconds", "Audio run through the VAD (each channel)", registry=r
        )
        self.prepare_seconds = Counter(
            "qa_ingest_prepare_seconds", "Wall time reading and segmenting calls", registry=r
        )
        self.open_legs = Gauge("qa_ingest_open_legs", "Legs started and not ended", registry=r)
        self.open_calls = Gauge(
            "qa_ingest_open_calls", "Calls with a leg started and not ended", registry=r
        )
        self._open: dict[str, set[int]] = {}
        self._lock = threading.Lock()

    def on_prepared(self, prep: PreparedCall, wall_s: float) -> None:
        audio = prep.audio
        self.vad_audio_seconds.inc(sum(len(ch) for ch in audio.channels) / TARGET_RATE)
        self.prepare_seconds.inc(max(0.0, wall_s))
        self.heartbeat.beat()

    def on_sent(self, msg: WireMessage, size: int) -> None:
        """One message taken by the producer."""
        self.bytes.inc(size)
        if isinstance(msg, WireSegment):
            self.segments.inc()
        elif isinstance(msg, Watermark):
            self.watermarks.inc()
        elif isinstance(msg, LegStart):
            self.legs_started.inc()
            self._leg(msg.call_id, msg.channel, opened=True)
        elif isinstance(msg, LegEnd):
            self.legs_ended.inc()
            self._leg(msg.call_id, msg.channel, opened=False)
        self.heartbeat.beat()

    def _leg(self, call_id: str, channel: int, *, opened: bool) -> None:
        with self._lock:
            legs = self._open.setdefault(call_id, set())
            if opened:
                legs.add(channel)
            else:
                legs.discard(channel)
            if not legs:
                del self._open[call_id]
            self.open_legs.set(sum(map(len, self._open.values())))
            self.open_calls.set(len(self._open))

    def on_calls(self, result: str, n: int = 1) -> None:
        if n:
            self.calls.labels(result).inc(n)


class DeliveryError(QAError):
    """The broker did not acknowledge every message of a call."""


class SegmentPublisher:
    """A kafka-python producer (``acks=all``, idempotent) for the segments topic; a call is
    delivered when :meth:`publish` returns."""

    def __init__(
        self,
        config: KafkaSinkConfig,
        topic: str = DEFAULT_TOPIC,
        producer_factory: Callable[..., Any] | None = None,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        if producer_factory is None:
            try:
                from kafka import KafkaProducer
            except ImportError as e:  # pragma: no cover - optional extra
                raise QAError("ingest needs kafka-python: pip install 'qa-pipeline[kafka]'") from e
            producer_factory = KafkaProducer
        self.config = config
        self.topic = topic
        self.servers = ", ".join(config.bootstrap_servers)
        kw = config.producer_kwargs()
        for key in ("bootstrap_servers", *CLIENT_KEYS):
            kw.pop(key, None)
        kw["client_id"] = f"{config.client_id}-ingest"
        self._producer = connect(
            producer_factory, list(config.bootstrap_servers), config.security(), **kw
        )

    def publish(self, call_id: str, msgs: Sequence[WireMessage]) -> int:
        """Send a call's messages in order and wait until the broker acknowledged them all
        (bounded by ``delivery_timeout_ms``); the bytes sent. Raises :class:`DeliveryError`
        (nothing of the call is known to be stored), or ``WireError`` before sending
        anything for a message that would not be readable."""
        values = [encode(m) for m in msgs]  # a message a reader would refuse: WireError
        futures = [self.send(call_id, m, v) for m, v in zip(msgs, values, strict=True)]
        self.wait(call_id, futures)
        return sum(map(len, values))

    def send(self, call_id: str, msg: WireMessage, value: bytes) -> Any:
        """Hand one encoded message to the producer (keyed by call id); its future.
        Raises :class:`DeliveryError` when the producer refuses it."""
        try:
            fut = self._producer.send(
                self.topic, key=call_id.encode(), value=value, headers=headers(msg)
            )
        except Exception as exc:
            raise self._error(call_id, exc) from exc
        if self.metrics is not None:
            self.metrics.on_sent(msg, len(value))
        return fut

    def wait(self, call_id: str, futures: Sequence[Any]) -> None:
        """Wait until the broker acknowledged every future of a call (bounded by
        ``delivery_timeout_ms``); :class:`DeliveryError` at the first that fails."""
        deadline = time.monotonic() + self.config.delivery_timeout_ms / 1000 + 5
        try:
            for fut in futures:
                fut.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception as exc:
            raise self._error(call_id, exc) from exc

    def _error(self, call_id: str, exc: BaseException) -> DeliveryError:
        if self.metrics is not None:
            self.metrics.publish_errors.inc()
        return DeliveryError(
            f"Kafka at {self.servers} did not acknowledge call {call_id} on topic "
            f"{self.topic} ({type(exc).__name__}: {exc or 'no answer in time'})"
        )

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._producer.close(timeout=timeout)
        except Exception as exc:  # closing a broken client: nothing left to lose
            log.debug("closing kafka producer: %r", exc)


def audio_inputs(paths: Iterable[Path]) -> list[Path]:
    """Files as given; directories searched (recursively) for audio files, sorted."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
        else:
            out.append(p)
    return out


def prepare_call(
    pipeline: Pipeline, path: Path, metrics: IngestMetrics | None = None
) -> tuple[PreparedCall, list[WireMessage]]:
    """Read, segment and turn one recording into its wire messages."""
    t0 = time.monotonic()
    info = read_call_info(path)
    info = replace(info, session_id=session_for(info, path))
    prep = pipeline.prepare(path, info)
    if prep.mono is not None:
        raise IngestError(
            f"{path}: mono recording with audio.mono_roles: auto is not ingested (naming "
            "its voices needs the whole call's transcript); set audio.mono_roles: off "
            "to ingest it as one unknown speaker"
        )
    source, rate = read_source(path)
    msgs = call_messages(prep, source, rate)
    if metrics is not None:
        metrics.on_prepared(prep, time.monotonic() - t0)
    return prep, msgs


def run_ingest(
    pipeline: Pipeline,
    publisher: SegmentPublisher,
    paths: Sequence[Path],
    *,
    pace: float = 0.0,
    on_error: Callable[[str], None] = lambda line: None,
    stop: threading.Event | None = None,
) -> IngestCounts:
    """Ingest ``paths`` in order; stops at the first call the broker did not take, or when
    ``stop`` is set (SIGTERM: checked between calls), the remaining ones counted as
    undelivered and named in ``undelivered``. ``pace`` > 0: :func:`run_paced`."""
    if pace > 0:
        return run_paced(pipeline, publisher, paths, pace=pace, on_error=on_error, stop=stop)
    metrics = publisher.metrics
    counts = IngestCounts(calls=len(paths))
    for i, path in enumerate(paths):
        try:
            if stop is not None and stop.is_set():
                raise DeliveryError(f"stopped before {path}: not sent")
            prep, msgs = prepare_call(pipeline, path, metrics)
            size = publisher.publish(prep.call.call_id, msgs)
        except DeliveryError as e:
            on_error(str(e))
            rest = [str(p) for p in paths[i:]]
            counts.calls_undelivered += len(rest)
            counts.undelivered = rest
            if metrics is not None:
                metrics.on_calls("undelivered", len(rest))
            return counts
        except QAError as e:  # unreadable recording, mono with auto roles, ...
            counts.inputs_refused += 1
            if metrics is not None:
                metrics.on_calls("refused")
            on_error(str(e))
            continue
        counts.add(msgs, size)
        if metrics is not None:
            metrics.on_calls("delivered")
        log.info("ingested %s: %d messages, %d bytes", prep.call.call_id, len(msgs), size)
    return counts


def ingest_command(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="recorded calls, or directories searched for them", show_default=False),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML config (audio, VAD; sinks.kafka: brokers, TLS, SASL, timeouts)",
        ),
    ] = None,
    kafka: Annotated[
        str | None,
        typer.Option("--kafka", help="bootstrap servers (host:port,...): overrides sinks.kafka"),
    ] = None,
    topic: Annotated[str, typer.Option("--topic", help="segments topic")] = DEFAULT_TOPIC,
    pace: Annotated[
        float,
        typer.Option(
            "--pace",
            min=0.0,
            help="0: as fast as the broker takes them; > 0: replay the calls side by side "
            "at this multiple of real time (1 = live), each message when its call clock "
            "comes (a stand-in for live lines)",
        ),
    ] = 0.0,
    health_port: Annotated[
        int | None,
        typer.Option(
            "--health-port",
            min=0,
            max=65535,
            help="serve /healthz and /metrics (segments, bytes, open legs, publish errors) "
            "on this port while the run lasts (0: any free port; default: none)",
        ),
    ] = None,
    health_host: Annotated[
        str, typer.Option("--health-host", help="address of the health/metrics listener")
    ] = "127.0.0.1",
) -> None:
    """Read recorded calls, cut speech segments (VAD) and publish them to Kafka with each
    leg's watermarks and end (the first stage of the distributed pipeline)."""
    from .config import load_config

    try:
        cfg = load_config(config)
        kcfg = stage_kafka_config(cfg.sinks.kafka, kafka)
        paths = audio_inputs(inputs)
        if not paths:
            raise IngestError("no recordings found in " + ", ".join(map(str, inputs)))
    except (QAError, ValueError, OSError) as e:
        fail(e)
    metrics = IngestMetrics() if health_port is not None else None
    health = None
    if metrics is not None and health_port is not None:
        try:
            health = serve_health(metrics.registry, metrics.heartbeat, health_host, health_port)
        except OSError as e:
            fail(QAError(f"--health-port {health_port}: {e}"))
        log.info("health and metrics on %s", health.url)
    stop = threading.Event()
    stop_on_signals(stop.set, "stopping: the calls not yet sent are reported undelivered")
    try:
        try:
            publisher = SegmentPublisher(kcfg, topic, metrics=metrics)
        except KafkaConnectError as e:
            fail(e, EXIT_UNDELIVERED)

        def report(line: str) -> None:
            typer.echo(f"error: {line}", err=True)

        try:
            counts = run_ingest(
                Pipeline(cfg), publisher, paths, pace=pace, on_error=report, stop=stop
            )
        finally:
            publisher.close()
    finally:
        if health is not None:
            health.stop()
    summary = {k: v for k, v in counts.__dict__.items()}
    sys.stdout.write(json.dumps({"ingest": summary}, ensure_ascii=False) + "\n")
    if counts.calls_undelivered:
        report(
            f"{counts.calls_undelivered} call(s) not delivered to Kafka at {publisher.servers}: "
            + ", ".join(counts.undelivered)
        )
        raise typer.Exit(EXIT_UNDELIVERED)
    if counts.inputs_refused:
        raise typer.Exit(EXIT_CONFIG)


def due_times(msgs: Sequence[WireMessage]) -> list[float]:
    """When a live source would have each message, in call-clock seconds: a leg start at 0,
    a segment when it ends (the VAD has closed it), a watermark at its time, a leg end at
    its end; never before an earlier message of the same leg (a watermark waits for the
    segment that started before it)."""
    last: dict[int, float] = {}
    out: list[float] = []
    for m in msgs:
        if isinstance(m, LegStart):
            t = 0.0
        elif isinstance(m, Watermark):
            t = m.time
        elif isinstance(m, (WireSegment, LegEnd)):
            t = m.end
        else:  # an utterance is no message ingest writes
            raise TypeError(f"ingest does not publish {m.kind} messages")
        t = max(t, last.get(m.channel, 0.0))
        last[m.channel] = t
        out.append(t)
    return out


def run_paced(
    pipeline: Pipeline,
    publisher: SegmentPublisher,
    paths: Sequence[Path],
    *,
    pace: float = 1.0,
    on_error: Callable[[str], None] = lambda line: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
) -> IngestCounts:
    """Replay the calls side by side, all starting now, each message published when the
    call clock reaches its :func:`due_times` (``pace`` 1 = real time, 2 = twice as fast): a
    stand-in for live lines, for the stages downstream. Each leg's messages keep their
    order. After the last message every call's acknowledgements are awaited; a message the
    producer refuses, or ``stop`` set (SIGTERM), stops the replay. Calls not acknowledged in
    full are counted and named as undelivered."""
    if pace <= 0:
        raise ValueError("pace must be > 0")
    metrics = publisher.metrics
    counts = IngestCounts(calls=len(paths))
    ready: list[tuple[Path, str, list[WireMessage], list[bytes]]] = []
    for path in paths:
        if stop is not None and stop.is_set():
            break
        try:
            prep, msgs = prepare_call(pipeline, path, metrics)
            ready.append((path, prep.call.call_id, msgs, [encode(m) for m in msgs]))
        except QAError as e:
            counts.inputs_refused += 1
            if metrics is not None:
                metrics.on_calls("refused")
            on_error(str(e))
    timeline = sorted(
        (due / pace, c, i)
        for c, (_, _, msgs, _) in enumerate(ready)
        for i, due in enumerate(due_times(msgs))
    )
    futures: list[list[Any]] = [[] for _ in ready]
    t0 = clock()
    stopped = False
    try:
        for due, c, i in timeline:
            if stop is not None and stop.is_set():
                on_error("replay stopped by a signal: calls not sent to their end are undelivered")
                stopped = True
                break
            if (left := t0 + due - clock()) > 0:
                sleep(left)
            _, call_id, msgs, values = ready[c]
            futures[c].append(publisher.send(call_id, msgs[i], values[i]))
    except DeliveryError as e:
        on_error(str(e))
        stopped = True
    for c, (path, call_id, msgs, values) in enumerate(ready):
        try:
            if len(futures[c]) < len(msgs):
                raise DeliveryError(f"call {call_id}: replay stopped before its end")
            publisher.wait(call_id, futures[c])
        except DeliveryError as e:
            if not stopped:
                on_error(str(e))
            counts.calls_undelivered += 1
            counts.undelivered.append(str(path))
            continue
        counts.add(msgs, sum(map(len, values)))
    not_read = [str(p) for p in paths[counts.inputs_refused + len(ready) :]]
    counts.calls_undelivered += len(not_read)  # stopped while reading the recordings
    counts.undelivered += not_read
    if metrics is not None:
        metrics.on_calls("delivered", counts.calls_delivered)
        metrics.on_calls("undelivered", counts.calls_undelivered)
    return counts
