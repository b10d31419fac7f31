"""Stage messages on Kafka: a call's legs, speech segments with their audio, clock watermarks.

What ``qa-pipeline ingest`` publishes to the segments topic (``deploy/README.md``, "Stages on
Kafka") and what the stages after it (ASR workers, evaluators) read. Each value is one
msgpack map with two fields every message has:

* ``type``: ``leg_start`` | ``segment`` | ``watermark`` | ``leg_end`` | ``utterance``,
* ``v``: the wire schema version, :data:`WIRE_VERSION`. A reader refuses a version it does
  not know (:class:`WireError`) instead of misreading it. Optional fields may be added
  within a version (readers ignore keys they do not know); anything else is a new version.

The record key is the call id (UTF-8) so one call's messages keep their order in one
partition; the headers ``type`` and ``v`` repeat those fields for routing without decoding.
Times are seconds on the call clock (0 = start of the call), per leg (``channel``: 0 = the
agent's side of a two-channel recording, 1 = the customer's; ``role`` says which).

Per call and leg, in this order:

* :class:`LegStart` (what is known about the call: :class:`~qa_pipeline.messages.CallInfo`),
* :class:`WireSegment` x n with ``seq`` 0, 1, 2, ... in order of ``start``, interleaved with
* :class:`Watermark`: no segment of this leg starting before ``time`` is still to come
  (every one has been published before it); at most 0.5 s of call clock apart, monotone,
* :class:`LegEnd`: the leg's audio ended at ``end`` (the side hung up, or the recording
  stopped); nothing more comes on this leg (a final watermark).

A segment's audio travels at the source's rate (8 kHz telephony stays 8 kHz), as 16-bit
little-endian PCM (``pcm_s16le``; 24-bit and float sources rounded to 16 bits) or G.711
μ-law (``mulaw``, one byte a sample: μ-law sources travel as μ-law, the very samples they
carried; only a "negative zero" code is written as the other zero). Sources above 16 kHz
are carried at 16 kHz, the rate the ASR decodes (a 25 s segment at 48 kHz would not fit
Kafka's default 1 MB message; ``source_rate`` keeps the original). The largest segment the VAD cuts (25 s; at
most 30 s) at 16 kHz is 800,000 bytes of PCM (960,000 at 30 s), under the broker's default
``max.message.bytes`` (1,048,588).

The utterances topic (ASR workers → evaluators) carries, per call and leg in the same
order, the leg's :class:`LegStart`, one :class:`WireUtterance` per segment (by ``seq``) and
the same :class:`Watermark` and :class:`LegEnd` messages, each passed on after every
segment before it was decoded: a watermark there means every utterance of the leg that
starts before it has been published.

Delivery is at least once: a reader de-duplicates segments and utterances by
``(call_id, channel, seq)``;
watermarks and leg ends are idempotent (a repeated one says nothing new).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, TypeAlias

import msgspec
import msgspec.msgpack
import numpy as np
import numpy.typing as npt

from .audio import resample_cut
from .errors import QAError
from .messages import CallInfo, Role, SpeechSegment, Utterance

__all__ = [
    "ENCODINGS",
    "MAX_SEGMENT_S",
    "MAX_WIRE_RATE",
    "WIRE_VERSION",
    "LegEnd",
    "LegStart",
    "Watermark",
    "WireError",
    "WireMessage",
    "WireSegment",
    "WireUtterance",
    "decode",
    "encode",
    "headers",
    "mulaw_decode",
    "mulaw_encode",
]

#: the wire schema version this code writes and the only one it reads
WIRE_VERSION = 1
#: audio encodings of a segment: 16-bit little-endian PCM, G.711 μ-law
ENCODINGS = ("pcm_s16le", "mulaw")
Encoding: TypeAlias = Literal["pcm_s16le", "mulaw"]
#: segments above this rate are carried at it (the ASR's rate)
MAX_WIRE_RATE = 16000
MIN_WIRE_RATE = 4000
#: the longest segment accepted (the VAD's ``max_utterance_s`` is at most 30 s)
MAX_SEGMENT_S = 30.0
MAX_CHANNELS = 16
#: source audio around a segment carried for its resampling (audio.ASR_CONTEXT_S)
MAX_CONTEXT_S = 0.5
MAX_ID_CHARS = 128

Int16: TypeAlias = npt.NDArray[np.int16]


class WireError(QAError, ValueError):
    """A wire message that cannot be read: unknown schema version or type, a missing or
    mistyped field, or values that do not agree (audio length against times and rate)."""


class _Wire(msgspec.Struct, frozen=True, tag_field="type"):
    kind: ClassVar[str]


class LegStart(_Wire, frozen=True, tag="leg_start"):
    """A leg of a call begins: the call as the ingest process knows it (its
    ``CallInfo``, redacted like everything the pipeline hands out)."""

    call_id: str
    channel: int
    role: Role
    call: CallInfo
    v: int = WIRE_VERSION
    kind: ClassVar[str] = "leg_start"


class WireSegment(_Wire, frozen=True, tag="segment"):
    """One speech segment of one leg, cut by the VAD, with its audio at ``sample_rate``.

    ``seq`` counts the leg's segments from 0 in order of ``start``. ``audio`` holds
    ``(end - start) * sample_rate`` samples (± 1 ms and a sample: times are written to the
    millisecond), encoded as ``encoding`` says; the first is at ``start``."""

    call_id: str
    channel: int
    role: Role
    seq: int
    start: float
    end: float
    sample_rate: int
    source_rate: int
    encoding: Encoding
    audio: bytes
    #: below 16 kHz: source samples around the segment that ``audio`` holds too (before its
    #: first sample, after its last), and the 16 kHz samples the ASR decodes: ``keep16``
    #: from ``trim16`` on, of ``audio`` resampled whole (:func:`qa_pipeline.audio.asr_cut`,
    #: as the recorded path resamples; 0: ``audio`` is the segment alone)
    context_before: int = 0
    context_after: int = 0
    trim16: int = 0
    keep16: int = 0
    v: int = WIRE_VERSION
    kind: ClassVar[str] = "segment"

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def num_samples(self) -> int:
        return len(self.audio) // (2 if self.encoding == "pcm_s16le" else 1)

    def pcm(self) -> Int16:
        """The audio as 16-bit samples (μ-law expanded)."""
        if self.encoding == "mulaw":
            return mulaw_decode(self.audio)
        return np.frombuffer(self.audio, dtype="<i2").astype(np.int16)

    def samples(self) -> npt.NDArray[np.float32]:
        """The audio as float32 in [-1, 1) at ``sample_rate``."""
        return (self.pcm().astype(np.float32) / 32768.0).astype(np.float32)

    def to_segment(self) -> SpeechSegment:
        """The in-process message: float32 at 16 kHz (resampled with soxr, HQ, as
        recordings are), what the ASR decodes: with ``keep16``, the very samples the
        recorded path decodes."""
        x = self.samples()
        if self.keep16:
            x = resample_cut(x, self.sample_rate, self.trim16, self.keep16)
        elif self.sample_rate != MAX_WIRE_RATE:
            import soxr

            x = np.ascontiguousarray(
                soxr.resample(x, self.sample_rate, MAX_WIRE_RATE, quality="HQ"), dtype=np.float32
            )
        return SpeechSegment(
            call_id=self.call_id,
            channel=self.channel,
            role=self.role,
            start=self.start,
            end=self.end,
            samples=x,
            sample_rate=MAX_WIRE_RATE,
        )

    @classmethod
    def from_pcm(
        cls,
        *,
        call_id: str,
        channel: int,
        role: Role,
        seq: int,
        start: float,
        end: float,
        pcm: Int16,
        sample_rate: int,
        source_rate: int | None = None,
        encoding: Encoding = "pcm_s16le",
        context_before: int = 0,
        context_after: int = 0,
        trim16: int = 0,
        keep16: int = 0,
    ) -> WireSegment:
        """A segment from 16-bit samples, encoded as ``encoding``."""
        data = (
            mulaw_encode(pcm)
            if encoding == "mulaw"
            else np.ascontiguousarray(pcm, dtype="<i2").tobytes()
        )
        return cls(
            call_id=call_id,
            channel=channel,
            role=role,
            seq=seq,
            start=start,
            end=end,
            sample_rate=sample_rate,
            source_rate=source_rate or sample_rate,
            encoding=encoding,
            audio=data,
            context_before=context_before,
            context_after=context_after,
            trim16=trim16,
            keep16=keep16,
        )


class Watermark(_Wire, frozen=True, tag="watermark"):
    """Call clock of one leg: no segment of this leg starting before ``time`` is still to
    come (all of them precede this message in the call's partition)."""

    call_id: str
    channel: int
    time: float
    v: int = WIRE_VERSION
    kind: ClassVar[str] = "watermark"


class LegEnd(_Wire, frozen=True, tag="leg_end"):
    """One leg of a call is over: its audio ended at ``end`` seconds; no message of this
    leg follows. A call is over when both of its legs ended."""

    call_id: str
    channel: int
    end: float
    v: int = WIRE_VERSION
    kind: ClassVar[str] = "leg_end"


class WireUtterance(_Wire, frozen=True, tag="utterance"):
    """What the ASR made of segment ``seq`` of a leg (the utterances topic): the
    :class:`~qa_pipeline.messages.Utterance` (text redacted as the text step does, its
    personal data as entity spans), or, when the segment gave no words the rules should
    see (Whisper's hallucination on noise, a decode loop it could not recover),
    ``utterance`` None and ``dropped`` the reason. Exactly one of the two is set, so a
    reader knows every segment of the leg up to ``seq`` has been decoded.

    The utterance's ``index`` is the segment's ``seq`` on that leg; the evaluator numbers
    the call's utterances across legs (by start) as the in-process pipeline does.
    ``asr_seconds``: the decode's wall time (metrics)."""

    call_id: str
    channel: int
    seq: int
    utterance: Utterance | None = None
    dropped: str | None = None
    asr_seconds: float = 0.0
    v: int = WIRE_VERSION
    kind: ClassVar[str] = "utterance"


WireMessage: TypeAlias = LegStart | WireSegment | Watermark | LegEnd | WireUtterance
_TYPES: dict[str, type[Any]] = {
    t.kind: t for t in (LegStart, WireSegment, Watermark, LegEnd, WireUtterance)
}

_ENCODER = msgspec.msgpack.Encoder()


def encode(msg: WireMessage) -> bytes:
    """The message as msgpack bytes (checked first: a message that a reader would refuse
    is not written)."""
    _check(msg)
    return _ENCODER.encode(msg)


def headers(msg: WireMessage) -> list[tuple[str, bytes]]:
    """Kafka record headers: ``type`` and ``v``, for routing without decoding."""
    return [("type", msg.kind.encode()), ("v", str(msg.v).encode())]


def decode(data: bytes) -> WireMessage:
    """The message :func:`encode` wrote; :class:`WireError` naming the message type (and the
    call, when readable) for anything else."""
    try:
        raw = msgspec.msgpack.decode(data)
    except msgspec.DecodeError as e:
        raise WireError(f"wire message: not msgpack ({e})") from e
    if not isinstance(raw, dict):
        raise WireError(f"wire message: a map expected, got {type(raw).__name__}")
    kind = raw.get("type")
    name = f"wire message {kind!r}" if isinstance(kind, str) else "wire message"
    if isinstance(raw.get("call_id"), str):
        name += f" of call {raw['call_id'][:MAX_ID_CHARS]!r}"
    version = raw.get("v")
    if version != WIRE_VERSION:
        raise WireError(
            f"{name}: schema version {version!r} is not supported (this reader knows "
            f"version {WIRE_VERSION} only; upgrade the reader for a newer writer)"
        )
    if kind not in _TYPES:
        raise WireError(f"{name}: unknown type (known: {', '.join(_TYPES)})")
    try:
        msg: WireMessage = msgspec.convert(raw, _TYPES[kind])
    except msgspec.ValidationError as e:
        raise WireError(f"{name}: {e}") from e
    try:
        _check(msg)
    except WireError as e:
        raise WireError(f"{name}: {e}") from e
    return msg


def _check(msg: WireMessage) -> None:
    """Raise :class:`WireError` for values that do not agree."""
    if msg.v != WIRE_VERSION:
        raise WireError(f"schema version {msg.v} (writes {WIRE_VERSION} only)")
    if not msg.call_id or len(msg.call_id) > MAX_ID_CHARS:
        raise WireError(f"call_id must be 1-{MAX_ID_CHARS} characters")
    if not 0 <= msg.channel < MAX_CHANNELS:
        raise WireError(f"channel {msg.channel} out of range 0-{MAX_CHANNELS - 1}")
    if isinstance(msg, WireSegment):
        _check_segment(msg)
    elif isinstance(msg, Watermark):
        _check_time("time", msg.time)
    elif isinstance(msg, LegEnd):
        _check_time("end", msg.end)
    elif isinstance(msg, WireUtterance):
        _check_utterance(msg)
    elif msg.call.call_id != msg.call_id:
        raise WireError(f"call.call_id {msg.call.call_id!r} is not the message's call_id")


def _check_utterance(m: WireUtterance) -> None:
    if m.seq < 0:
        raise WireError(f"seq {m.seq} is negative")
    if (m.utterance is None) == (m.dropped is None):
        raise WireError("exactly one of utterance and dropped must be set")
    if m.dropped is not None and not m.dropped:
        raise WireError("dropped needs a reason")
    u = m.utterance
    if u is not None:
        if (u.call_id, u.channel) != (m.call_id, m.channel):
            raise WireError(
                f"utterance of call {u.call_id!r} channel {u.channel} in a message of call "
                f"{m.call_id!r} channel {m.channel}"
            )
        _check_time("start", u.start)
        _check_time("end", u.end)
        if u.end < u.start:
            raise WireError(f"utterance end {u.end} before its start {u.start}")
    if not math.isfinite(m.asr_seconds) or m.asr_seconds < 0:
        raise WireError(f"asr_seconds {m.asr_seconds} is not a duration")


def _check_time(name: str, t: float) -> None:
    if not math.isfinite(t) or t < 0:
        raise WireError(f"{name} {t} is not a call-clock time (finite, >= 0)")


def _check_segment(s: WireSegment) -> None:
    if s.seq < 0:
        raise WireError(f"seq {s.seq} is negative")
    _check_time("start", s.start)
    _check_time("end", s.end)
    if s.end <= s.start:
        raise WireError(f"end {s.end} is not after start {s.start}")
    if s.duration > MAX_SEGMENT_S + 0.01:
        raise WireError(f"segment of {s.duration:.2f} s is longer than {MAX_SEGMENT_S:.0f} s")
    if not MIN_WIRE_RATE <= s.sample_rate <= MAX_WIRE_RATE:
        raise WireError(f"sample_rate {s.sample_rate} Hz out of {MIN_WIRE_RATE}-{MAX_WIRE_RATE}")
    if s.source_rate < s.sample_rate:
        raise WireError(f"source_rate {s.source_rate} below sample_rate {s.sample_rate}")
    if s.source_rate != s.sample_rate and s.sample_rate != MAX_WIRE_RATE:
        raise WireError(
            f"audio at {s.sample_rate} Hz from a {s.source_rate} Hz source: only sources "
            f"above {MAX_WIRE_RATE} Hz are carried at another rate ({MAX_WIRE_RATE} Hz)"
        )
    if s.encoding == "pcm_s16le" and len(s.audio) % 2:
        raise WireError(f"pcm_s16le audio of odd length {len(s.audio)} bytes")
    if min(s.context_before, s.context_after, s.trim16, s.keep16) < 0:
        raise WireError("context_before, context_after, trim16 and keep16 must be >= 0")
    context = s.context_before + s.context_after
    if context > 2 * MAX_CONTEXT_S * s.sample_rate + 2:
        raise WireError(f"{context} samples of context: more than {MAX_CONTEXT_S} s a side")
    if (context or s.trim16) and not s.keep16:
        raise WireError("context without keep16: which samples the ASR decodes is not said")
    if s.keep16:
        if s.sample_rate >= MAX_WIRE_RATE:
            raise WireError(f"keep16 on audio at {s.sample_rate} Hz (only below 16 kHz)")
        if abs(s.keep16 - s.duration * MAX_WIRE_RATE) > 1.0 + 0.001 * MAX_WIRE_RATE + 1e-6:
            raise WireError(f"keep16 {s.keep16} for {s.duration:.4f} s at 16 kHz")
    own = s.num_samples - context
    expected = (s.end - s.start) * s.sample_rate
    if abs(own - expected) > 1.0 + 0.001 * s.sample_rate + 1e-6:
        raise WireError(
            f"{own} samples of audio for {s.duration:.4f} s at {s.sample_rate} Hz "
            f"(expected {expected:.0f}{f'; {context} of context besides' if context else ''})"
        )


# -- G.711 μ-law ------------------------------------------------------------------------------

_BIAS = 0x84
_CLIP = 32635


def mulaw_encode(pcm: Int16) -> bytes:
    """16-bit samples → G.711 μ-law bytes (the ITU-T table; ``mulaw_decode`` of a source's
    μ-law bytes encodes back to the same bytes, but for the two codes of zero)."""
    x = np.asarray(pcm, dtype=np.int32)
    sign = (x < 0).astype(np.int32)
    mag = np.minimum(np.where(sign == 1, -x, x), _CLIP) + _BIAS
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    code = ~((sign << 7) | (exponent << 4) | mantissa) & 0xFF
    return code.astype(np.uint8).tobytes()


def _mulaw_table() -> Int16:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mag = ((((u & 0x0F) << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


_MULAW_TABLE = _mulaw_table()


def mulaw_decode(data: bytes) -> Int16:
    """G.711 μ-law bytes → 16-bit samples (the values libsndfile reads a μ-law WAV as)."""
    return _MULAW_TABLE[np.frombuffer(data, dtype=np.uint8)]
