"""Voice activity detection: webrtcvad behind a small interface, with a pure state machine.

:class:`StreamingVad` takes one channel's 16 kHz float32 audio in pieces of any size and
yields :class:`~qa_pipeline.messages.SpeechSegment` as soon as each is closed:

* a frame is voiced when webrtcvad calls it speech **and** its level is at least
  ``noise_gate_db`` above the channel's noise floor (:class:`NoiseFloor`: a low percentile
  of the frame levels of the last ``noise_floor_window_s``, from the past only, so it works
  on a live stream); webrtcvad alone takes line noise (pink noise 14-30 dB under the
  speech) for speech and opens segments seconds before the words. The first
  ``WARM_UP_S`` have no past: webrtcvad alone, and a segment that opened there is judged
  again against the floor once it closes,
* a segment opens after ``start_ms`` of consecutive voiced frames (hysteresis),
* closes after ``stop_ms`` of unvoiced frames,
* keeps ``pad_ms`` of audio either side (never beyond the stream),
* is split at ``max_utterance_s`` (at the quietest frame of its last second),
* has its speech trimmed to its first and last frame within ``trim_db`` of its loud level
  (babble or noise that held it open at either edge),
* is dropped when shorter than ``min_utterance_s`` (judged on the gated span plus up to
  ``start_ms`` either side that webrtcvad heard: the gate does not drop 对 or 嗯),
* is dropped when it is not speech (tonal or stationary: tones, DTMF, fax, line noise,
  hold music; :mod:`.screen`, ``nonspeech_filter``); :attr:`StreamingVad.rejected` counts
  those by reason.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .messages import Role, Samples, SpeechSegment
from .screen import nonspeech_reason

WARM_UP_S = 0.3  # a stream's first audio, before any floor can be known: no noise gate


class VadConfig(BaseModel):
    """webrtcvad segmentation with start/stop hysteresis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aggressiveness: int = Field(default=2, ge=0, le=3)
    frame_ms: Literal[10, 20, 30] = 30
    start_ms: int = Field(default=90, ge=0, description="voiced time needed to open a segment")
    stop_ms: int = Field(default=600, ge=0, description="unvoiced time that closes a segment")
    pad_ms: int = Field(default=150, ge=0, description="audio kept before/after each segment")
    max_utterance_s: float = Field(default=25.0, gt=1.0, le=30.0)
    min_utterance_s: float = Field(default=0.3, ge=0.0)
    min_level_dbfs: float = Field(
        default=-55.0, description="frames quieter than this are never speech (line noise)"
    )
    noise_gate_db: float = Field(
        default=3.0,
        ge=0.0,
        description="a frame counts as speech only this far (dB) above the channel's noise "
        "floor, whatever webrtcvad says (0 = off)",
    )
    noise_floor_window_s: float = Field(
        default=5.0, gt=0.0, description="past audio the noise floor is estimated from"
    )
    noise_floor_percentile: float = Field(
        default=5.0,
        ge=0.0,
        lt=100.0,
        description="the noise floor: this percentile of the window's frame levels",
    )
    trim_db: float = Field(
        default=20.0,
        ge=0.0,
        description="a segment's speech runs from its first to its last frame within this "
        "many dB of its loud level (90th percentile): quieter babble or noise that held it "
        "open at either edge is cut off (0 = off)",
    )
    turn_gap_s: float = Field(
        default=1.5,
        ge=0.0,
        description="recorded calls: join a channel's segments closer than this into one "
        "turn when the other side does not speak in between (more context for the ASR)",
    )
    nonspeech_filter: bool = Field(
        default=True,
        description="drop VAD segments that are tonal or stationary (tones, DTMF, fax, "
        "call-progress tones, line noise, hold music) before the ASR (qa_pipeline.screen)",
    )
    nonspeech_tonal_fraction: float = Field(
        default=0.75,
        gt=0.0,
        le=1.0,
        description="a segment is tonal when this share of its active frames has two spectral "
        "peaks holding > 80 % of the band energy (measured: tones/DTMF/fax >= 0.86, speech "
        "<= 0.67)",
    )
    nonspeech_min_spread_db: float = Field(
        default=1.2,
        ge=0.0,
        description="a segment is stationary when its frame level varies less than this "
        "(std, dB; measured: line noise / hold music <= 0.72, speech >= 1.7 even at 5 dB SNR)",
    )


class VoiceDetector(Protocol):
    """Decides whether one frame of 16-bit PCM holds speech."""

    def is_speech(self, frame: bytes, sample_rate: int) -> bool: ...


class WebRtcDetector:
    def __init__(self, aggressiveness: int = 2) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        return bool(self._vad.is_speech(frame, sample_rate))


def frame_level_db(frame: Samples) -> float:
    """RMS level of one frame, dBFS (-120 for digital silence)."""
    power = float(np.mean(np.square(frame, dtype=np.float64))) if frame.size else 0.0
    return 10.0 * math.log10(power) if power > 1e-12 else -120.0


class NoiseFloor:
    """A channel's noise floor from its past frame levels: the ``percentile`` of the last
    ``window`` levels (minimum statistics: the line noise shows in the pauses between words
    and while the other side talks, so a low percentile of a few seconds sits on it even
    inside a turn). From the first frame on it is the percentile of what has been heard so
    far: a stream that opens with speech keeps its start, because syllables dip.
    :class:`StreamingVad` lets loud frames inside a segment teach it only one in four."""

    def __init__(self, window: int, percentile: float) -> None:
        self._levels: deque[float] = deque(maxlen=max(1, window))
        self._q = percentile
        self._sorted: list[float] = []

    def update(self, level_db: float, *, learn: bool = True) -> float:
        """Return the floor of the levels heard before this frame (``-inf`` for the
        first), then add its level when ``learn``."""
        floor = self.floor
        if not learn:
            return floor
        if len(self._levels) == self._levels.maxlen:
            old = self._levels[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._levels.append(level_db)
        bisect.insort(self._sorted, level_db)
        return floor

    @property
    def floor(self) -> float:
        n = len(self._sorted)
        if not n:
            return -math.inf
        return self._sorted[min(n - 1, int(self._q / 100.0 * n))]


class StreamingVad:
    """Per-channel VAD state machine. Feed with :meth:`push`; finish with :meth:`flush`."""

    def __init__(
        self,
        config: VadConfig,
        *,
        call_id: str,
        channel: int,
        role: Role,
        sample_rate: int = 16000,
        detector: VoiceDetector | None = None,
    ) -> None:
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad needs 8/16/32/48 kHz audio, got {sample_rate}")
        self.cfg = config
        self.call_id = call_id
        self.channel = channel
        self.role = role
        self.rate = sample_rate
        self.detector = detector or WebRtcDetector(config.aggressiveness)
        self.frame_len = sample_rate * config.frame_ms // 1000
        self._frame_s = config.frame_ms / 1000.0
        self._start_frames = max(1, round(config.start_ms / config.frame_ms))
        self._stop_frames = max(1, round(config.stop_ms / config.frame_ms))
        self._pad_frames = round(config.pad_ms / config.frame_ms)
        self._max_frames = int(config.max_utterance_s / self._frame_s)
        self._min_level = 10 ** (config.min_level_dbfs / 20.0)
        self._gate_db = config.noise_gate_db
        self._warm_frames = max(1, round(WARM_UP_S / self._frame_s))
        self.noise = NoiseFloor(
            round(config.noise_floor_window_s / self._frame_s), config.noise_floor_percentile
        )
        self._carry = np.zeros(0, dtype=np.float32)
        # All frames since the segment (or the pre-roll) began; bounded by max_utterance.
        self._frames: list[Samples] = []
        self._levels: list[float] = []  # each buffered frame's level, dBFS
        self._trim_db = config.trim_db
        self._after_split = False  # the open segment continues one split at max length
        self._voiced: list[bool] = []
        self._heard: list[bool] = []  # webrtcvad's own call, before the noise gate
        self._buf_start = 0  # frame index of self._frames[0]
        self._n = 0  # frames seen
        self._speaking = False
        self._seg_start = 0  # frame index where the current segment's speech starts
        self._run = 0  # current voiced (quiet state) or unvoiced (speaking state) run
        self._last_end = 0  # frame where the previous segment's audio ended (no overlap)
        self.rejected: Counter[str] = Counter()  # segments the non-speech screen dropped

    def push(self, samples: Samples) -> Iterator[SpeechSegment]:
        """Add audio; yield every segment this audio closes."""
        data = np.concatenate([self._carry, samples]) if self._carry.size else samples
        n_full = len(data) // self.frame_len
        for i in range(n_full):
            frame = data[i * self.frame_len : (i + 1) * self.frame_len]
            yield from self._step(frame)
        self._carry = np.array(data[n_full * self.frame_len :], dtype=np.float32)

    def flush(self) -> Iterator[SpeechSegment]:
        """End of stream: close an open segment."""
        if self._speaking:
            last_voiced = self._last_voiced()
            seg = self._emit(self._seg_start, last_voiced + 1, stream_end=self._n)
            if seg is not None:
                yield seg
        self._speaking = False
        self._frames, self._voiced, self._levels, self._heard = [], [], [], []
        self._buf_start = self._n

    # -- state machine -------------------------------------------------------------
    def _classify(self, frame: Samples, level: float) -> tuple[bool, bool]:
        """(voiced, what webrtcvad alone said)."""
        loud = True
        if self._gate_db > 0:
            # The first few frames have no past to judge them by: webrtcvad alone.
            floor = self.noise.floor if self._n >= self._warm_frames else -math.inf
            # Inside a segment the floor learns from loud frames 4x slower: a long steady
            # utterance does not become the floor, yet a line that gets noisier mid-segment
            # is learnt within about 20 s.
            loud = level >= floor + self._gate_db
            self.noise.update(level, learn=not self._speaking or not loud or self._n % 4 == 0)
        if float(np.max(np.abs(frame))) < self._min_level:
            return False, False
        pcm = (np.clip(frame, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        heard = bool(self.detector.is_speech(pcm, self.rate))
        return heard and loud, heard

    def _step(self, frame: Samples) -> Iterator[SpeechSegment]:
        level = frame_level_db(frame)
        voiced, heard = self._classify(frame, level)
        self._frames.append(frame)
        self._levels.append(level)
        self._voiced.append(voiced)
        self._heard.append(heard)
        idx = self._n
        self._n += 1
        if not self._speaking:
            self._run = self._run + 1 if voiced else 0
            if self._run >= self._start_frames:
                self._speaking = True
                self._seg_start = idx - self._run + 1
                self._run = 0
            else:
                self._trim(keep_from=idx + 1 - self._pad_frames - self._start_frames)
            return
        self._run = 0 if voiced else self._run + 1
        if self._run >= self._stop_frames:
            seg = self._emit(self._seg_start, idx + 1 - self._run, stream_end=None)
            self._speaking = False
            self._run = 0
            self._trim(keep_from=idx + 1 - self._pad_frames - self._start_frames)
            if seg is not None:
                yield seg
        elif idx + 1 - self._seg_start >= self._max_frames:
            cut = self._split_point(idx + 1)
            seg = self._emit(self._seg_start, cut, stream_end=None, pad_end=False)
            self._seg_start = cut
            self._after_split = True
            if seg is not None:
                yield seg

    def _last_voiced(self) -> int:
        for j in range(len(self._voiced) - 1, -1, -1):
            if self._voiced[j]:
                return self._buf_start + j
        return self._seg_start

    def _split_point(self, end: int) -> int:
        """Quietest frame in the last second of an over-long segment."""
        window = max(1, int(1.0 / self._frame_s))
        lo = max(self._seg_start + 1, end - window)
        best, best_level = end, float("inf")
        for f in range(lo, end):
            fr = self._frames[f - self._buf_start]
            level = float(np.mean(np.abs(fr)))
            if level < best_level:
                best, best_level = f, level
        return best

    def _rejudge_warm_up(self, start: int, end: int) -> int:
        """A segment that opened in the warm-up (no floor yet, webrtcvad alone): its
        leading warm-up frames judged again against the floor known now. Returns where its
        speech starts (``end``: nothing in it clears the floor)."""
        if self._gate_db <= 0 or start >= self._warm_frames:
            return start
        bar = self.noise.floor + self._gate_db
        f = start
        while f < end and f < self._warm_frames and self._levels[f - self._buf_start] < bar:
            f += 1
        if f == self._warm_frames:  # then the first voiced frame after the warm-up
            while f < end and not self._voiced[f - self._buf_start]:
                f += 1
        return f

    def _heard_span(self, start: int, end: int, *, back: bool = True) -> int:
        """The gated span with up to ``start_ms`` either side that webrtcvad heard as
        speech: the minimum length is judged on it, so the gate shortening a short word's
        weak edges does not drop the word (对, 嗯)."""
        if self._gate_db <= 0 or start >= end:
            return max(0, end - start)
        a, b = start - self._buf_start, end - self._buf_start
        lo, hi = max(0, a - self._start_frames), min(len(self._heard), b + self._start_frames)
        while back and a > lo and self._heard[a - 1]:
            a -= 1
        while b < hi and self._heard[b]:
            b += 1
        return b - a

    def _trim_edges(
        self, start: int, end: int, *, trim_start: bool, trim_end: bool
    ) -> tuple[int, int]:
        """The segment's speech from its first to its last frame within ``trim_db`` of its
        loud level (90th percentile of its frame levels): quieter audio at its edges is
        babble or noise that held the segment open, not the speaker."""
        lo = max(0, start - self._buf_start)
        levels = np.asarray(self._levels[lo : max(lo, end - self._buf_start)])
        if len(levels) == 0:  # nothing of the segment left in the buffer to judge by
            return start, end
        loud = np.flatnonzero(levels >= float(np.percentile(levels, 90)) - self._trim_db)
        base = self._buf_start + lo  # the frame number of levels[0]
        first = base + int(loud[0]) if trim_start else start
        last = base + int(loud[-1]) + 1 if trim_end else end
        return first, max(last, first + 1)

    def _trim(self, keep_from: int) -> None:
        drop = keep_from - self._buf_start
        if drop > 0:
            del self._frames[:drop]
            del self._levels[:drop]
            del self._voiced[:drop]
            del self._heard[:drop]
            self._buf_start += drop

    def _emit(
        self, start: int, end: int, *, stream_end: int | None, pad_end: bool = True
    ) -> SpeechSegment | None:
        judged = self._rejudge_warm_up(start, end)
        # (warm-up frames judged noise again do not count towards the minimum either)
        speech_s = self._heard_span(judged, end, back=judged == start) * self._frame_s
        start = judged
        start = min(start, end - 1)
        if self._trim_db > 0 and end > start:
            start, end = self._trim_edges(
                start, end, trim_start=not self._after_split, trim_end=pad_end
            )
        if pad_end:
            self._after_split = False
        a = max(self._buf_start, self._last_end, start - self._pad_frames)
        limit = self._n if stream_end is None else stream_end
        b = min(limit, end + (self._pad_frames if pad_end else 0))
        b = max(b, a + 1)
        frames = self._frames[a - self._buf_start : b - self._buf_start]
        self._last_end = b
        # Keep the buffer from the segment's end on (the next segment may need it).
        self._trim(keep_from=min(end, self._n))
        if speech_s < self.cfg.min_utterance_s:
            return None
        audio = np.concatenate(frames) if frames else np.zeros(0, dtype=np.float32)
        if self.cfg.nonspeech_filter and (
            reason := nonspeech_reason(
                audio,
                self.rate,
                tonal_fraction=self.cfg.nonspeech_tonal_fraction,
                min_spread_db=self.cfg.nonspeech_min_spread_db,
            )
        ):
            self.rejected[reason] += 1
            return None
        return SpeechSegment(
            call_id=self.call_id,
            channel=self.channel,
            role=self.role,
            start=round(a * self._frame_s, 3),
            end=round(a * self._frame_s + len(audio) / self.rate, 3),
            samples=audio,
            sample_rate=self.rate,
        )


def segment_channel(
    samples: Samples,
    config: VadConfig,
    *,
    call_id: str,
    channel: int,
    role: Role,
    sample_rate: int = 16000,
    chunk_s: float = 1.0,
    rejected: Counter[str] | None = None,
) -> Iterator[SpeechSegment]:
    """Run the streaming VAD over a whole channel (fed in ``chunk_s`` pieces). Segments the
    non-speech screen drops are counted by reason into ``rejected`` when given."""
    vad = StreamingVad(config, call_id=call_id, channel=channel, role=role, sample_rate=sample_rate)
    step = int(chunk_s * sample_rate)
    for i in range(0, len(samples), step):
        yield from vad.push(samples[i : i + step])
    yield from vad.flush()
    if rejected is not None:
        rejected.update(vad.rejected)


def merge_by_start(streams: Iterable[Iterable[SpeechSegment]]) -> list[SpeechSegment]:
    """All channels' segments in call order (by start, then channel)."""
    out = [s for stream in streams for s in stream]
    out.sort(key=lambda s: (s.start, s.channel))
    return out


def merge_turns(
    segments: list[SpeechSegment],
    channels: tuple[Samples, ...],
    *,
    max_gap_s: float,
    max_len_s: float,
    sample_rate: int = 16000,
) -> list[SpeechSegment]:
    """Join consecutive segments of one channel into a turn when the gap between them is
    at most ``max_gap_s``, the other channels stay silent in between, and the turn stays
    within ``max_len_s``. The audio between them is taken from the channel.
    ``segments`` must be in call order (see :func:`merge_by_start`)."""
    if max_gap_s <= 0 or not segments:
        return list(segments)
    out: list[SpeechSegment] = []
    open_by_channel: dict[int, int] = {}  # channel -> index in out of its last segment
    for seg in segments:
        j = open_by_channel.get(seg.channel)
        if (
            j is not None
            and seg.start - (prev := out[j]).end <= max_gap_s
            and seg.end - prev.start <= max_len_s
            and all(o.channel == seg.channel for o in out[j + 1 :])  # nobody else spoke
        ):
            a = int(round(prev.start * sample_rate))
            b = int(round(seg.end * sample_rate))
            out[j] = SpeechSegment(
                call_id=seg.call_id,
                channel=seg.channel,
                role=seg.role,
                start=prev.start,
                end=seg.end,
                samples=channels[seg.channel][a:b],
                sample_rate=sample_rate,
            )
            continue
        open_by_channel[seg.channel] = len(out)
        out.append(seg)
    return out
