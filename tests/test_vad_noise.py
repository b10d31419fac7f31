"""The VAD on a noisy line: webrtcvad alone takes pink line noise for speech and opens
segments seconds before the words (NO-INTERRUPT fired on calls without a talk-over); the
noise gate (a frame counts only ``vad.noise_gate_db`` above the channel's noise floor),
the warm-up re-judgement and the edge trim keep segments on the speech."""

from __future__ import annotations

import numpy as np
import pytest

from qa_pipeline.config import VadConfig, load_config
from qa_pipeline.messages import Role
from qa_pipeline.screen import nonspeech_reason
from qa_pipeline.vad import NoiseFloor, StreamingVad

TOLERANCE_S = 0.15


def stream(x: np.ndarray, cfg: VadConfig, rate: int, chunk_s: float = 0.02) -> list[tuple]:
    """Feed like a live line (20 ms chunks); (start, end) of the speech inside each segment
    (its padding excluded)."""
    vad = StreamingVad(cfg, call_id="c", channel=0, role=Role.AGENT, sample_rate=rate)
    step = int(chunk_s * rate)
    segs = [s for i in range(0, len(x), step) for s in vad.push(x[i : i + step])]
    segs += list(vad.flush())
    pad = cfg.pad_ms / 1000
    return [(round(s.start + pad, 3), round(s.end - pad, 3)) for s in segs]


@pytest.fixture(scope="module")
def pink_line_call() -> tuple[np.ndarray, list[tuple[float, float]], int]:
    """Two espeak-ng turns (-16 dBFS) on a telephone line with pink noise 15 dB under the
    speech (webrtcvad takes line noise above about -33 dBFS for speech), noise-only
    stretches before, between and after."""
    from qa_pipeline.samples.generate import Voice, render_speech
    from qa_pipeline.samples.nonspeech import noise

    rate = 8000
    texts = ["您好，这里是蓝海客服，请问有什么可以帮您？", "好的，我帮您查一下。"]
    clips = [render_speech(t, Voice("f2", 160, 50, level_dbfs=-16.0), rate) for t in texts]
    starts = [2.5, 2.5 + len(clips[0]) / rate + 3.0]
    total = starts[1] + len(clips[1]) / rate + 2.5
    x = noise("pink", -31.0, total, rate)[: int(total * rate)].copy()
    turns = []
    for st, clip in zip(starts, clips, strict=True):
        i = int(st * rate)
        x[i : i + len(clip)] += clip
        turns.append((st, st + len(clip) / rate))
    return x.astype(np.float32), turns, rate


def test_pink_line_segments_start_on_the_speech(pink_line_call: tuple) -> None:
    x, turns, rate = pink_line_call
    segs = stream(x, load_config().vad, rate)
    print("turns", turns, "segments", segs)
    assert len(segs) == len(turns), segs  # none on the noise-only stretches
    for (a, b), (t0, t1) in zip(segs, turns, strict=True):
        assert abs(a - t0) <= TOLERANCE_S, (a, t0)
        assert abs(b - t1) <= TOLERANCE_S, (b, t1)


def test_without_the_gate_the_noise_opens_segments(pink_line_call: tuple) -> None:
    """The same line with the gate off: webrtcvad opens on the noise (what the gate fixes)."""
    x, turns, rate = pink_line_call
    cfg = load_config().vad.model_copy(update={"noise_gate_db": 0.0, "trim_db": 0.0})
    segs = stream(x, cfg, rate)
    assert segs[0][0] < turns[0][0] - 1.0, segs  # here: one segment from the line's start


def test_noise_floor_is_a_low_percentile_of_the_past() -> None:
    nf = NoiseFloor(window=100, percentile=5)
    assert nf.update(-50.0) == -np.inf  # nothing heard before the first frame
    rng = np.random.default_rng(1)
    for level in rng.normal(-50, 1, 300):
        nf.update(float(level))
    assert -53 < nf.floor < -50
    for _ in range(60):  # 60 % of the window loud: the floor stays on the noise
        nf.update(-20.0)
    assert nf.floor < -50
    for _ in range(100):  # the whole window louder: the line got noisier
        nf.update(-30.0)
    assert nf.floor == -30.0
    for _ in range(10):  # quieter again: a low percentile follows within a few frames
        nf.update(-45.0)
    assert nf.floor == -45.0


class LoudnessDetector:
    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        pcm = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768
        return float(np.sqrt(np.mean(pcm**2))) > 0.02


def machine(cfg: VadConfig, x: np.ndarray, rate: int = 16000) -> list[tuple[float, float]]:
    vad = StreamingVad(
        cfg.model_copy(update={"nonspeech_filter": False}),
        call_id="c",
        channel=0,
        role=Role.AGENT,
        detector=LoudnessDetector(),
    )
    segs = list(vad.push(x)) + list(vad.flush())
    return [(s.start, s.end) for s in segs]


def bed_with_bursts(
    bed: float, bursts: list[tuple[float, float, float]], total: float, rate: int = 16000
) -> np.ndarray:
    """White noise of RMS ``bed`` (the detector calls it speech), with (start, end, rms)
    bursts on top."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(int(total * rate)) * bed
    for a, b, rms in bursts:
        i, j = int(a * rate), int(b * rate)
        x[i:j] = rng.standard_normal(j - i) * rms
    return x.astype(np.float32)


CFG = VadConfig(start_ms=90, stop_ms=300, pad_ms=0, min_utterance_s=0.2, min_level_dbfs=-60)


def test_gate_keeps_a_loud_line_shut_from_the_first_frame() -> None:
    """A line whose noise the detector takes for speech from t=0: with the gate, only the
    bursts 12 dB above it are segments (the warm-up frames, judged again once the floor
    is known, do not open one at 0); without it, one segment from 0 to the end."""
    x = bed_with_bursts(0.03, [(2.0, 3.0, 0.12), (5.0, 6.5, 0.12)], 8.0)
    segs = machine(CFG, x)
    assert [(round(a, 1), round(b, 1)) for a, b in segs] == [(2.0, 3.0), (5.0, 6.5)]
    ((a, b),) = machine(CFG.model_copy(update={"noise_gate_db": 0.0}), x)
    assert a == 0.0 and b > 7.9


def test_trim_cuts_quiet_lead_in_but_keeps_the_speech() -> None:
    """A quiet stretch 26 dB under the speech that holds the segment open before it
    (babble, noise) is trimmed off; without the trim the segment starts there."""
    quiet = 0.12 * 10 ** (-26 / 20)
    x = bed_with_bursts(0.0005, [(1.0, 2.0, quiet), (2.0, 3.5, 0.12)], 5.0)

    class AllSpeech:
        def is_speech(self, frame: bytes, sample_rate: int) -> bool:
            return True

    def first_start(trim_db: float) -> float:
        cfg = CFG.model_copy(
            update={"nonspeech_filter": False, "noise_gate_db": 0.0, "trim_db": trim_db}
        )
        vad = StreamingVad(cfg, call_id="c", channel=0, role=Role.AGENT, detector=AllSpeech())
        segs = list(vad.push(x)) + list(vad.flush())
        assert len(segs) == 1
        return segs[0].start

    assert first_start(20.0) == pytest.approx(2.0, abs=0.035)
    assert first_start(0.0) == 0.0


def test_a_near_monotone_voice_is_not_a_tone() -> None:
    """espeak-ng's ``steph`` voice (pitch range 166-200 Hz) puts most of its energy in two
    harmonics like a tone does; its pitch drifts, a tone's does not."""
    from qa_pipeline.samples.generate import Voice, render_speech
    from qa_pipeline.samples.nonspeech import render

    kw = {"tonal_fraction": 0.75, "min_spread_db": 1.2}
    for rate in (8000, 16000):
        clip = render_speech("您好，这里是蓝海客服，我叫陈静。", Voice("steph", 160, 50), rate)
        assert nonspeech_reason(clip, rate, **kw) is None
        assert nonspeech_reason(render("tone-1k", 3.0, rate), rate, **kw) == "tonal"
        assert nonspeech_reason(render("dtmf", 3.0, rate), rate, **kw) == "tonal"
