"""The Twilio Media Streams wire format and the μ-law codec (no I/O)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qa_pipeline.messages import Direction, Role
from qa_pipeline.sources.base import SourceError
from qa_pipeline.sources.codec import slin16_decode, slin16_encode, ulaw_decode, ulaw_encode
from qa_pipeline.sources.twilio import (
    Connected,
    Ignored,
    Media,
    Start,
    Stop,
    TwilioSerializer,
    parse_message,
)


def test_all_event_types_round_trip() -> None:
    ser = TwilioSerializer("MZ1", "CA1")
    assert isinstance(parse_message(ser.connected()), Connected)
    start = parse_message(ser.start({"agent_id": "1024", "direction": "outbound", "queue": "vip"}))
    assert isinstance(start, Start)
    info = start.call_info()
    assert info.call_id == "CA1"
    assert info.agent_id == "1024" and info.direction is Direction.OUTBOUND
    assert info.channels == (Role.AGENT, Role.CUSTOMER)
    assert ("queue", "vip") in info.metadata and ("stream_sid", "MZ1") in info.metadata
    out = parse_message(ser.media("outbound", 40, b"\xff" * 160))
    inb = parse_message(ser.media("inbound", 60, b"\x7f" * 160))
    assert isinstance(out, Media) and isinstance(inb, Media)
    assert (out.channel, inb.channel) == (0, 1)  # outbound = agent, inbound = customer
    assert out.start == 0.04 and len(out.payload) == 160
    assert isinstance(parse_message(ser.stop()), Stop)
    assert isinstance(parse_message('{"event": "mark", "mark": {"name": "x"}}'), Ignored)


def test_call_id_parameter_overrides_the_sid() -> None:
    ser = TwilioSerializer("MZ1", "CA1")
    start = parse_message(ser.start({"call_id": "call-7", "started_at": "2026-11-23T14:05:00"}))
    assert isinstance(start, Start)
    info = start.call_info()
    assert info.call_id == "call-7" and info.started_at is not None


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("{not json", "malformed_json"),
        ("[1, 2]", "malformed_json"),
        ('{"event": "teleport"}', "unknown_event"),
        ('{"event": "media"}', "missing_field"),
        ('{"event": "media", "media": {"track": "sideways", "payload": ""}}', "bad_track"),
        ('{"event": "media", "media": {"track": "inbound", "payload": "@@@"}}', "bad_payload"),
        (
            '{"event": "media", "media": {"track": "inbound", "timestamp": "x", "payload": ""}}',
            "bad_field",
        ),
    ],
)
def test_bad_messages_are_classified(message: str, reason: str) -> None:
    with pytest.raises(SourceError) as e:
        parse_message(message)
    assert e.value.reason == reason


@pytest.mark.parametrize(
    ("encoding", "rate"), [("audio/x-alaw", 8000), ("audio/x-mulaw", 16000), ("audio/l16", 8000)]
)
def test_wrong_codec(encoding: str, rate: int) -> None:
    ser = TwilioSerializer("MZ1", "CA1")
    with pytest.raises(SourceError) as e:
        parse_message(ser.start(encoding=encoding, sample_rate=rate))
    assert e.value.reason == "bad_codec"


def test_bad_direction_parameter() -> None:
    start = parse_message(TwilioSerializer("MZ", "CA").start({"direction": "sideways"}))
    assert isinstance(start, Start)
    with pytest.raises(SourceError) as e:
        start.call_info()
    assert e.value.reason == "bad_parameter"


def test_serializer_numbers_messages() -> None:
    ser = TwilioSerializer("MZ1", "CA1")
    seqs = [json.loads(m)["sequenceNumber"] for m in (ser.start(), ser.media("inbound", 0, b""))]
    assert seqs == ["1", "2"]


def test_ulaw_round_trip() -> None:
    t = np.arange(8000) / 8000
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    y = ulaw_decode(ulaw_encode(x))
    assert y.dtype == np.float32 and len(y) == len(x)
    snr = 10 * np.log10(np.sum(x**2) / np.sum((x - y) ** 2))
    assert snr > 30  # G.711 gives ~38 dB on a loud tone
    assert abs(float(ulaw_decode(b"\xff")[0])) < 1e-3  # 0xff is zero


def test_slin16_round_trip_and_odd_length() -> None:
    x = np.array([0.0, 0.5, -0.5, -1.0], dtype=np.float32)
    assert np.allclose(slin16_decode(slin16_encode(x)), x, atol=1e-4)
    with pytest.raises(ValueError):
        slin16_decode(b"\x00\x01\x02")
