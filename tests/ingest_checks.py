"""What a call's messages on the segments topic must satisfy (``qa_pipeline.wire``), checked
against the recording itself; shared by the ingest unit and broker tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from qa_pipeline.wire import LegEnd, LegStart, Watermark, WireMessage, WireSegment

STEP_S = 0.5


def check_call_stream(msgs: Sequence[WireMessage], wav: Path) -> dict[int, list[WireSegment]]:
    """Assert per leg: the leg's start first; segments numbered 0, 1, ... in order of start,
    their audio the recording's samples bit for bit (16-bit PCM, μ-law expanded); watermarks
    monotone, at most 0.5 s apart from 0 to the leg's end, each after every segment starting
    before it and before every segment starting after it; one leg end, last, at the channel's
    end. Every spoken turn of the generator's sidecar overlaps a segment of its channel.
    Returns each leg's segments."""
    side = json.loads(wav.with_suffix(".json").read_text(encoding="utf-8"))
    src, rate = sf.read(wav, dtype="int16", always_2d=True)
    call_id = side["call"]["call_id"]
    legs = range(src.shape[1])
    assert {m.call_id for m in msgs} == {call_id}
    by_leg: dict[int, list[WireMessage]] = {ch: [] for ch in legs}
    for m in msgs:
        by_leg[m.channel].append(m)
    segments: dict[int, list[WireSegment]] = {}
    for ch in legs:
        leg = by_leg[ch]
        first, *rest = leg
        assert isinstance(first, LegStart), f"leg {ch} does not open with its start: {first}"
        assert first.role == ("agent", "customer")[ch] and first.call.call_id == call_id
        assert first.call.session_id, "the leg start carries the call's session"
        assert isinstance(rest[-1], LegEnd), f"leg {ch} does not close with its end"
        assert sum(isinstance(m, (LegStart, LegEnd)) for m in rest[:-1]) == 0
        end = rest[-1].end
        assert end == round(src.shape[0] / rate, 3), (end, src.shape[0] / rate)
        segs: list[WireSegment] = []
        marks: list[float] = [0.0]
        for m in rest[:-1]:
            if isinstance(m, Watermark):
                assert m.time >= marks[-1], f"leg {ch}: watermark {m.time} after {marks[-1]}"
                assert m.time - marks[-1] <= STEP_S + 1e-9, f"leg {ch}: gap before {m.time}"
                marks.append(m.time)
            else:
                assert isinstance(m, WireSegment)
                assert m.seq == len(segs), f"leg {ch}: seq {m.seq} where {len(segs)} is due"
                assert m.start >= marks[-1], (
                    f"leg {ch}: segment at {m.start} after mark {marks[-1]}"
                )
                assert not segs or m.start > segs[-1].start
                segs.append(m)
        assert end - marks[-1] <= STEP_S + 1e-9, f"leg {ch}: last watermark {marks[-1]}, end {end}"
        assert segs, f"leg {ch}: no speech found"
        for s in segs:
            assert s.role == first.role and s.sample_rate == rate == s.source_rate
            # below 16 kHz the audio holds the source around the segment too (what the
            # recorded path resamples it with), and says which 16 kHz samples to decode
            i0 = round(s.start * rate) - s.context_before
            assert np.array_equal(s.pcm(), src[i0 : i0 + s.num_samples, ch]), (ch, s.seq)
            own = s.num_samples - s.context_before - s.context_after
            assert abs(own - s.duration * rate) <= 1 + rate / 1000
            if rate < 16000:
                assert s.keep16 and abs(s.keep16 - s.duration * 16000) <= 17
                # 0.1 s a side, less only at the leg's edges
                assert s.context_before == min(round(0.1 * rate), round(s.start * rate))
            else:
                assert (s.context_before, s.context_after, s.keep16) == (0, 0, 0)
        for turn in side["turns"]:
            if turn["channel"] == ch:
                assert any(s.start < turn["end"] and s.end > turn["start"] for s in segs), turn
        segments[ch] = segs
    return segments
