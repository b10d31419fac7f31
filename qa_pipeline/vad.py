"""Voice activity detection: webrtcvad behind a small interface, with a pure state machine.

:class:`StreamingVad` takes one channel's 16 kHz float32 audio in pieces of any size and
yields :class:`~qa_pipeline.messages.SpeechSegment` as soon as each is closed:

* a segment opens after ``start_ms`` of consecutive voiced frames (hysteresis),
* closes after ``stop_ms`` of unvoiced frames,
* keeps ``pad_ms`` of audio either side (never beyond the stream),
* is split at ``max_utterance_s`` (at the quietest frame of its last second),
* is dropped when shorter than ``min_utterance_s``,
* is dropped when it is not speech (tonal or stationary: tones, DTMF, fax, line noise,
  hold music; :mod:`.screen`, ``nonspeech_filter``); :attr:`StreamingVad.rejected` counts
  those by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

from .config import VadConfig
from .messages import Role, Samples, SpeechSegment
from .screen import nonspeech_reason


class VoiceDetector(Protocol):
    """Decides whether one frame of 16-bit PCM holds speech."""

    def is_speech(self, frame: bytes, sample_rate: int) -> bool: ...


class WebRtcDetector:
    def __init__(self, aggressiveness: int = 2) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        return bool(self._vad.is_speech(frame, sample_rate))


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
        self._carry = np.zeros(0, dtype=np.float32)
        # All frames since the segment (or the pre-roll) began; bounded by max_utterance.
        self._frames: list[Samples] = []
        self._voiced: list[bool] = []
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
        self._frames, self._voiced = [], []
        self._buf_start = self._n

    # -- state machine -------------------------------------------------------------
    def _classify(self, frame: Samples) -> bool:
        if float(np.max(np.abs(frame))) < self._min_level:
            return False
        pcm = (np.clip(frame, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        return self.detector.is_speech(pcm, self.rate)

    def _step(self, frame: Samples) -> Iterator[SpeechSegment]:
        voiced = self._classify(frame)
        self._frames.append(frame)
        self._voiced.append(voiced)
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

    def _trim(self, keep_from: int) -> None:
        drop = keep_from - self._buf_start
        if drop > 0:
            del self._frames[:drop]
            del self._voiced[:drop]
            self._buf_start += drop

    def _emit(
        self, start: int, end: int, *, stream_end: int | None, pad_end: bool = True
    ) -> SpeechSegment | None:
        speech_s = (end - start) * self._frame_s
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
