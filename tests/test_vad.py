from pathlib import Path

import numpy as np
import pytest
from audio_helpers import read_clip, write_call

from qa_pipeline.audio import load_call
from qa_pipeline.config import VadConfig
from qa_pipeline.messages import Role
from qa_pipeline.vad import StreamingVad, merge_by_start, merge_turns, segment_channel

RATE = 16000


class LoudnessDetector:
    """A stand-in detector: a frame is speech when it is loud. Keeps tests about the
    state machine independent of webrtcvad's model."""

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        pcm = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768
        return float(np.sqrt(np.mean(pcm**2))) > 0.05


def bursts(spec: list[tuple[float, float]], total: float) -> np.ndarray:
    """Noise bursts (start, end) in otherwise near-silent audio."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(int(total * RATE)) * 0.001).astype(np.float32)
    for a, b in spec:
        i, j = int(a * RATE), int(b * RATE)
        x[i:j] += (rng.standard_normal(j - i) * 0.2).astype(np.float32)
    return x


def machine_only(cfg: VadConfig) -> VadConfig:
    """The state machine alone: noise bursts stand for speech here, so the non-speech
    screen (tested in test_nonspeech.py) is off."""
    return cfg.model_copy(update={"nonspeech_filter": False})


def run(x: np.ndarray, cfg: VadConfig, chunk: int = 4800) -> list[tuple[float, float]]:
    vad = StreamingVad(
        machine_only(cfg), call_id="c", channel=0, role=Role.AGENT, detector=LoudnessDetector()
    )
    out = []
    for i in range(0, len(x), chunk):
        out += [(s.start, s.end) for s in vad.push(x[i : i + chunk])]
    out += [(s.start, s.end) for s in vad.flush()]
    return out


CFG = VadConfig(start_ms=90, stop_ms=300, pad_ms=60, min_utterance_s=0.2, min_level_dbfs=-60)


def test_segments_found_with_padding() -> None:
    segs = run(bursts([(1.0, 2.0), (3.0, 4.5)], 6.0), CFG)
    assert len(segs) == 2
    (a0, b0), (a1, b1) = segs
    assert a0 == pytest.approx(1.0 - 0.06, abs=0.035) and b0 == pytest.approx(2.0 + 0.06, abs=0.035)
    assert a1 == pytest.approx(3.0 - 0.06, abs=0.035) and b1 == pytest.approx(4.5 + 0.06, abs=0.035)


def test_short_pause_does_not_split_but_long_pause_does() -> None:
    segs = run(bursts([(1.0, 2.0), (2.2, 3.0), (3.6, 4.0)], 5.0), CFG)
    assert [round(a, 1) for a, _ in segs] == [0.9, 3.5]


def test_blips_shorter_than_start_are_ignored() -> None:
    assert run(bursts([(1.0, 1.05), (2.0, 2.06)], 3.0), CFG) == []


def test_min_utterance_drops_short_segments() -> None:
    cfg = VadConfig(start_ms=30, stop_ms=300, pad_ms=0, min_utterance_s=0.5, min_level_dbfs=-60)
    assert run(bursts([(1.0, 1.3)], 3.0), cfg) == []
    assert len(run(bursts([(1.0, 1.8)], 3.0), cfg)) == 1


def test_max_length_split_and_never_longer() -> None:
    cfg = VadConfig(start_ms=90, stop_ms=300, pad_ms=60, max_utterance_s=3.0, min_level_dbfs=-60)
    segs = run(bursts([(0.5, 10.5)], 11.0), cfg)
    assert len(segs) >= 4
    for a, b in segs:
        assert b - a <= 3.0 + 0.06 + 1e-6
    # contiguous pieces, no overlap, no gap inside the speech
    for (_, b0), (a1, _) in zip(segs, segs[1:], strict=False):
        assert a1 >= b0 - 1e-6
        assert a1 - b0 < 0.05


def test_speech_until_end_of_stream_is_flushed() -> None:
    segs = run(bursts([(1.0, 3.0)], 3.0), CFG)
    assert len(segs) == 1
    assert segs[0][1] <= 3.0 + 1e-6


def test_chunking_does_not_change_result() -> None:
    x = bursts([(0.7, 1.9), (2.5, 2.9), (4.0, 6.2)], 7.0)
    assert run(x, CFG, chunk=160) == run(x, CFG, chunk=4801) == run(x, CFG, chunk=len(x))


def test_rejects_unsupported_rate() -> None:
    with pytest.raises(ValueError, match="8/16/32/48"):
        StreamingVad(VadConfig(), call_id="c", channel=0, role=Role.AGENT, sample_rate=22050)


def test_merge_turns_joins_same_side_only_when_other_side_silent() -> None:
    x = bursts([(1.0, 2.0), (2.8, 3.5), (6.0, 7.0), (8.0, 9.0)], 10.0)
    y = bursts([(7.2, 7.8)], 10.0)
    cfg = VadConfig(start_ms=90, stop_ms=300, pad_ms=0, min_level_dbfs=-60)
    vad_segs = []
    for ch, sig in ((0, x), (1, y)):
        v = StreamingVad(
            machine_only(cfg),
            call_id="c",
            channel=ch,
            role=Role(("agent", "customer")[ch]),
            detector=LoudnessDetector(),
        )
        vad_segs.append(list(v.push(sig)) + list(v.flush()))
    merged = merge_turns(merge_by_start(vad_segs), (x, y), max_gap_s=1.5, max_len_s=25)
    spans = [(s.channel, round(s.start, 1), round(s.end, 1)) for s in merged]
    # 1.0-2.0 and 2.8-3.5 join (gap 0.8 s); 6.0-7.0 and 8.0-9.0 do not: the customer spoke
    assert spans == [(0, 1.0, 3.5), (0, 6.0, 7.0), (1, 7.2, 7.8), (0, 8.0, 9.0)]
    joined = merged[0]
    assert len(joined.samples) == pytest.approx((3.5 - 1.0) * RATE, abs=RATE * 0.04)


def test_webrtcvad_on_real_speech_places_turns(speech_dir: Path, tmp_path: Path) -> None:
    """Real speech placed at known times on two channels: the VAD finds each turn there,
    timestamps are monotonic per channel, inside the call, never longer than the maximum."""
    a = read_clip(speech_dir, "zh/paddlespeech_zh.wav")
    b = read_clip(speech_dir, "zh/aishell1_BAC009S0764W0121.wav")
    c = read_clip(speech_dir, "zh/funasr_asr_example_zh.wav")
    plan = [(0, 0.5, a), (1, 7.0, b), (0, 13.0, c)]
    f = write_call(tmp_path / "call.wav", plan, 20.0, rate=8000, subtype="ULAW")
    call = load_call(f)
    cfg = VadConfig()
    per_channel = [
        list(segment_channel(sig, cfg, call_id="x", channel=ch, role=call.roles[ch]))
        for ch, sig in enumerate(call.channels)
    ]
    for segs in per_channel:
        starts = [s.start for s in segs]
        assert starts == sorted(starts)
        for s0, s1 in zip(segs, segs[1:], strict=False):
            assert s1.start >= s0.end
        for s in segs:
            assert 0 <= s.start < s.end <= call.duration + 1e-6
            assert s.duration <= cfg.max_utterance_s + 1e-6
    for ch, start, clip in plan:
        # where the clip's speech really is (clips carry their own leading/trailing silence)
        frames = clip[: len(clip) // 480 * 480].reshape(-1, 480)
        rms = np.sqrt(np.mean(frames**2, axis=1))
        loud = np.flatnonzero(rms > rms.max() * 10 ** (-30 / 20))
        start, end = start + loud[0] * 0.03, start + (loud[-1] + 1) * 0.03
        covering = [s for s in per_channel[ch] if s.start < end and s.end > start]
        assert covering, f"no segment for turn at {start}s on channel {ch}"
        assert min(s.start for s in covering) == pytest.approx(start, abs=0.5)
        assert max(s.end for s in covering) == pytest.approx(end, abs=0.8)
