"""The stage messages on the wire (``qa_pipeline.wire``): round trips, sizes against Kafka's
message limit, G.711 μ-law against libsndfile, and decoding that refuses what it cannot
read with an error naming the message."""

from __future__ import annotations

import io
import struct
from datetime import datetime
from typing import Any

import msgspec
import numpy as np
import pytest
import soundfile as sf

from qa_pipeline.messages import CallInfo, Direction, EntitySpan, Role, Utterance
from qa_pipeline.wire import (
    WIRE_VERSION,
    LegEnd,
    LegStart,
    Watermark,
    WireError,
    WireSegment,
    WireUtterance,
    decode,
    encode,
    headers,
    mulaw_decode,
    mulaw_encode,
)

#: the broker's default max.message.bytes (Kafka 4.x: 1 MiB + record overhead allowance)
KAFKA_MAX_MESSAGE_BYTES = 1_048_588
#: what a segment may take of it: room for record headers and batch overhead
MARGIN = 0.8


def speechlike(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Noisy, amplitude-modulated tones over the whole 16-bit range (not silence: a codec
    that dropped or reordered samples would show)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.6 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x += 0.05 * rng.standard_normal(t.size)
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def segment(seconds: float, rate: int, encoding: str, **kw: object) -> WireSegment:
    args: dict[str, object] = {
        "call_id": "call-7f3a",
        "channel": 1,
        "role": Role.CUSTOMER,
        "seq": 12,
        "start": 61.23,
        "end": 61.23 + seconds,
        "pcm": speechlike(seconds, rate),
        "sample_rate": rate,
        "encoding": encoding,
    }
    args.update(kw)
    return WireSegment.from_pcm(**args)  # type: ignore[arg-type]


def raw(msg: Any) -> dict[str, Any]:
    d: dict[str, Any] = msgspec.msgpack.decode(encode(msg))
    return d


def reencode(d: dict[str, Any]) -> bytes:
    return msgspec.msgpack.encode(d)


# -- round trips and sizes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "encoding", "bytes_per_sample"), [(16000, "pcm_s16le", 2), (8000, "mulaw", 1)]
)
def test_25_s_segment_round_trips_under_kafka_message_limit(
    rate: int, encoding: str, bytes_per_sample: int
) -> None:
    seg = segment(25.0, rate, encoding)
    data = encode(seg)
    assert len(seg.audio) == 25 * rate * bytes_per_sample
    assert len(data) - len(seg.audio) < 300  # the envelope is small
    assert len(data) < MARGIN * KAFKA_MAX_MESSAGE_BYTES, len(data)
    back = decode(data)
    assert isinstance(back, WireSegment)
    assert back == seg
    assert back.v == WIRE_VERSION
    assert (back.call_id, back.channel, back.role, back.seq) == ("call-7f3a", 1, "customer", 12)
    assert back.start == 61.23 and back.end == pytest.approx(86.23)
    assert back.sample_rate == rate == back.source_rate


def test_int16_audio_is_bit_exact_and_mulaw_as_g711_says() -> None:
    pcm = speechlike(2.0, 16000, seed=4)
    back = decode(encode(segment(2.0, 16000, "pcm_s16le", pcm=pcm)))
    assert isinstance(back, WireSegment)
    assert np.array_equal(back.pcm(), pcm)
    assert back.samples().dtype == np.float32
    assert np.array_equal(back.samples(), pcm.astype(np.float32) / 32768)
    law = decode(encode(segment(2.0, 8000, "mulaw", pcm=pcm[:16000])))
    assert isinstance(law, WireSegment)
    assert np.array_equal(law.pcm(), mulaw_decode(mulaw_encode(pcm[:16000])))


def test_longest_segment_the_vad_may_cut_fits() -> None:
    """max_utterance_s is at most 30 s: 16 kHz PCM of that length still fits the broker."""
    assert len(encode(segment(30.0, 16000, "pcm_s16le"))) < KAFKA_MAX_MESSAGE_BYTES


def test_to_segment_is_16_khz_float() -> None:
    seg = segment(1.5, 8000, "mulaw").to_segment()
    assert seg.sample_rate == 16000 and seg.samples.dtype == np.float32
    assert abs(len(seg.samples) - 24000) <= 1
    assert (seg.call_id, seg.channel, seg.role, seg.start) == ("call-7f3a", 1, "customer", 61.23)


def test_control_messages_round_trip_with_headers() -> None:
    info = CallInfo(
        call_id="c1",
        started_at=datetime(2026, 11, 24, 14, 5),
        direction=Direction.OUTBOUND,
        agent_id="A1024",
        metadata=(("team", "north"),),
        session_id="0" * 32,
    )
    for msg in (
        LegStart(call_id="c1", channel=0, role=Role.AGENT, call=info),
        Watermark(call_id="c1", channel=1, time=12.5),
        LegEnd(call_id="c1", channel=0, end=48.63),
    ):
        assert decode(encode(msg)) == msg
        d = raw(msg)
        assert d["type"] == msg.kind and d["v"] == WIRE_VERSION
        assert headers(msg) == [("type", msg.kind.encode()), ("v", b"1")]


# -- G.711 μ-law against libsndfile --------------------------------------------------------


def wav_data_chunk(blob: bytes) -> bytes:
    """The ``data`` chunk of a RIFF/WAVE file."""
    assert blob[:4] == b"RIFF" and blob[8:12] == b"WAVE"
    i = 12
    while i + 8 <= len(blob):
        tag, size = blob[i : i + 4], struct.unpack("<I", blob[i + 4 : i + 8])[0]
        if tag == b"data":
            return blob[i + 8 : i + 8 + size]
        i += 8 + size + (size & 1)
    raise AssertionError("no data chunk")


def test_mulaw_matches_libsndfile_both_ways() -> None:
    pcm = np.concatenate(
        [speechlike(1.0, 8000, seed=9), np.array([-32768, -32767, -1, 0, 1, 32767], np.int16)]
    )
    buf = io.BytesIO()
    sf.write(buf, pcm, 8000, subtype="ULAW", format="WAV")
    codes = wav_data_chunk(buf.getvalue())
    assert mulaw_encode(pcm) == codes  # the bytes libsndfile writes
    buf.seek(0)
    assert np.array_equal(mulaw_decode(codes), sf.read(buf, dtype="int16")[0])  # and reads
    every = bytes(range(256))  # every code decodes and (but for 0x7f's zero) encodes back
    again = mulaw_encode(mulaw_decode(every))
    assert [i for i in range(256) if again[i] != every[i]] == [0x7F]


# -- decoding refuses ---------------------------------------------------------------------


def test_unknown_future_schema_version_is_refused_not_misread() -> None:
    d = raw(segment(1.0, 8000, "mulaw"))
    d["v"] = 2
    d["audio_codec"] = "opus"  # a field a newer writer might add
    with pytest.raises(WireError, match=r"'segment' of call 'call-7f3a': schema version 2"):
        decode(reencode(d))
    del d["v"]
    with pytest.raises(WireError, match="schema version None is not supported"):
        decode(reencode(d))


def test_optional_field_added_within_the_version_is_ignored() -> None:
    d = raw(Watermark(call_id="c1", channel=0, time=1.5))
    d["producer"] = "ingest-3"
    assert decode(reencode(d)) == Watermark(call_id="c1", channel=0, time=1.5)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"type": "transcript"}, r"'transcript' of call 'call-7f3a': unknown type"),
        ({"seq": "12"}, r"'segment' of call 'call-7f3a': Expected `int`, got `str` - at `\$.seq`"),
        ({"sample_rate": 48000}, "sample_rate 48000 Hz out of 4000-16000"),
        (
            {"sample_rate": 8000, "source_rate": 8000},
            r"32000 samples of audio for 2.0000 s at 8000 Hz \(expected 16000\)",
        ),
        ({"end": 63.25}, r"32000 samples of audio for 2.0200 s"),
        ({"end": 62.5}, r"32000 samples of audio for 1.2700 s"),
        ({"end": 61.0}, "end 61.0 is not after start 61.23"),
        ({"start": float("nan")}, "start nan is not a call-clock time"),
        ({"encoding": "opus"}, r"Invalid enum value 'opus' - at `\$.encoding`"),
        ({"channel": 16}, "channel 16 out of range"),
        ({"call_id": ""}, "call_id must be 1-128 characters"),
        ({"source_rate": 8000}, "source_rate 8000 below sample_rate 16000"),
        ({"seq": -1}, "seq -1 is negative"),
    ],
)
def test_inconsistent_segment_is_refused_naming_it(change: dict[str, object], error: str) -> None:
    d = raw(segment(2.0, 16000, "mulaw"))  # 16 kHz μ-law: 32000 bytes for 2 s
    d.update(change)
    with pytest.raises(WireError, match=error):
        decode(reencode(d))


def test_odd_pcm_and_missing_fields_and_garbage_are_refused() -> None:
    d = raw(segment(1.0, 8000, "pcm_s16le"))
    d["audio"] = d["audio"][:-1]
    with pytest.raises(WireError, match="odd length 15999 bytes"):
        decode(reencode(d))
    d = raw(LegEnd(call_id="c9", channel=1, end=3.0))
    del d["end"]
    with pytest.raises(WireError, match=r"'leg_end' of call 'c9': Object missing required field"):
        decode(reencode(d))
    with pytest.raises(WireError, match="not msgpack"):
        decode(b"\xc1")
    with pytest.raises(WireError, match="a map expected, got list"):
        decode(msgspec.msgpack.encode([1, 2]))
    d = raw(LegStart(call_id="c1", channel=0, role=Role.AGENT, call=CallInfo(call_id="c1")))
    d["call"]["call_id"] = "c2"
    with pytest.raises(WireError, match="call.call_id 'c2' is not the message's call_id"):
        decode(reencode(d))


def test_a_message_a_reader_would_refuse_is_not_written() -> None:
    bad = segment(1.0, 8000, "mulaw", end=70.0)
    with pytest.raises(WireError, match="samples of audio for"):
        encode(bad)
    with pytest.raises(WireError, match="not a call-clock time"):
        encode(Watermark(call_id="c1", channel=0, time=-1.0))


def test_utterance_message_round_trips_with_its_spans() -> None:
    """The ASR worker's output: the redacted utterance with its entity spans, or the reason
    its segment gave none; exactly one of the two, on the message's own call and leg."""
    u = Utterance(
        "c-1", 3, 1, Role.CUSTOMER, 1.0, 2.5, "我的手机号是[手机号]",
        raw_text="我的手机号是[手机号]", confidence=0.8,
        entities=(EntitySpan("mobile", 6, 11, "d1g3st", "6801"),),
    )  # fmt: skip
    kept = WireUtterance("c-1", 1, 3, utterance=u, asr_seconds=0.42)
    dropped = WireUtterance("c-1", 1, 4, dropped="hallucination")
    for m in (kept, dropped):
        assert decode(encode(m)) == m
        assert dict(headers(m))["type"] == b"utterance"
    assert decode(encode(kept)).utterance.entities[0].tail == "6801"  # type: ignore[union-attr]
    bad = [
        (WireUtterance("c-1", 1, 4), "exactly one"),
        (WireUtterance("c-1", 1, 4, utterance=u, dropped="loop"), "exactly one"),
        (WireUtterance("c-1", 0, 3, utterance=u), "channel 1 in a message of call"),
        (WireUtterance("c-2", 1, 3, utterance=u), "of call 'c-1'"),
        (WireUtterance("c-1", 1, 4, dropped=""), "needs a reason"),
        (WireUtterance("c-1", 1, -1, dropped="loop"), "negative"),
        (WireUtterance("c-1", 1, 3, utterance=u, asr_seconds=float("nan")), "asr_seconds"),
    ]
    for m, error in bad:
        with pytest.raises(WireError, match=error):
            encode(m)
        # and a writer that skipped the check is refused by the reader, naming the message
        raw = msgspec.msgpack.encode(m)
        with pytest.raises(WireError, match="'utterance' of call"):
            decode(raw)


def test_context_around_a_segment_is_checked() -> None:
    """Below 16 kHz a segment carries the source around it and which 16 kHz samples to
    decode; the parts must agree, and context says nothing without keep16."""
    pcm = np.zeros(8000 + 1600, dtype=np.int16)  # 1 s at 8 kHz, 0.1 s a side
    ok = dict(
        call_id="c", channel=0, role=Role.AGENT, seq=0, start=2.0, end=3.0, pcm=pcm,
        sample_rate=8000, encoding="mulaw", context_before=800, context_after=800,
        trim16=1600, keep16=16000,
    )  # fmt: skip
    seg = decode(encode(WireSegment.from_pcm(**ok)))  # type: ignore[arg-type]
    assert isinstance(seg, WireSegment) and len(seg.to_segment().samples) == 16000
    for change, error in [
        ({"keep16": 0}, "context without keep16"),
        ({"context_after": 0}, r"8800 samples of audio for 1.0000 s .* 800 of context"),
        ({"keep16": 12000}, "keep16 12000 for 1.0000 s"),
        ({"context_before": -1, "context_after": 1601}, ">= 0"),
        ({"pcm": np.zeros(8000 + 8800, dtype=np.int16), "context_after": 8000}, "context"),
    ]:
        with pytest.raises(WireError, match=error):
            encode(WireSegment.from_pcm(**{**ok, **change}))  # type: ignore[arg-type]
    with pytest.raises(WireError, match="keep16 on audio at 16000 Hz"):
        encode(
            WireSegment.from_pcm(
                **{**ok, "sample_rate": 16000, "pcm": np.zeros(16000 + 1600, dtype=np.int16)}
            )
        )  # type: ignore[arg-type]
