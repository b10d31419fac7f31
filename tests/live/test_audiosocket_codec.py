"""The AudioSocket frame codec (no I/O)."""

from __future__ import annotations

import uuid

import pytest

from qa_pipeline.sources.audiosocket import (
    Frame,
    FrameDecoder,
    Kind,
    audio_frame,
    encode_frame,
    hangup_frame,
    uuid_frame,
)
from qa_pipeline.sources.base import SourceError


def test_frames_encode_and_decode_incrementally() -> None:
    u = uuid.uuid4()
    wire = uuid_frame(u) + audio_frame(b"\x01\x00" * 160) + hangup_frame()
    assert wire[:3] == b"\x01\x00\x10"
    dec = FrameDecoder()
    frames: list[Frame] = []
    for i in range(0, len(wire), 7):  # arbitrary TCP segmentation
        frames.extend(dec.feed(wire[i : i + 7]))
    assert [f.kind for f in frames] == [Kind.UUID, Kind.AUDIO, Kind.HANGUP]
    assert uuid.UUID(bytes=frames[0].payload) == u
    assert len(frames[1].payload) == 320
    assert dec.pending == 0


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (encode_frame(0x42, b"x"), "unknown_kind"),
        (encode_frame(Kind.UUID, b"short"), "bad_uuid"),
        (encode_frame(Kind.AUDIO, b"\x00\x01\x02"), "bad_payload"),
    ],
)
def test_bad_frames(wire: bytes, reason: str) -> None:
    with pytest.raises(SourceError) as e:
        list(FrameDecoder().feed(wire))
    assert e.value.reason == reason


def test_payload_limit() -> None:
    with pytest.raises(ValueError):
        encode_frame(Kind.AUDIO, b"\x00" * 70000)
