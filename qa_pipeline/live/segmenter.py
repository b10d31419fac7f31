"""A live call's audio stage: per-channel clock alignment, resampling and streaming VAD.
Audio frames in, 16 kHz speech segments out; nothing else (no ASR, no rules, no events).

Audio arrives float32 at the source rate (codecs are decoded at the source edge). The VAD
runs at that rate when webrtcvad supports it (8/16/32/48 kHz: telephone audio stays at
8 kHz, the cheapest); each closed segment is resampled once to 16 kHz for Whisper. Other
rates are resampled to 16 kHz as a stream before the VAD. Gaps in a channel's call clock
(lost packets, a leg that joined late) are filled with silence so both channels keep the
same clock.

Between processes, :class:`~qa_pipeline.messages.AudioChunk` goes in and
:class:`~qa_pipeline.messages.SpeechSegment` comes out (both carry their call id); the
stage's state is per call and never leaves it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr

from ..audio import DIGITAL_SILENCE, MIN_HANGUP_SILENCE_S, resample
from ..messages import AudioChunk, CallInfo, SpeechSegment, replace
from ..vad import StreamingVad, VadConfig

ASR_RATE = 16000
VAD_RATES = (8000, 16000, 32000, 48000)
MAX_GAP_S = 30.0  # a clock jump larger than this is not filled (counted as an error)


class ChannelInput:
    """One channel: clock alignment, (resampling), VAD; yields 16 kHz segments."""

    def __init__(
        self, vad: VadConfig, *, call_id: str, channel: int, role: Any, sample_rate: int
    ) -> None:
        self.rate = sample_rate
        self.vad_rate = sample_rate if sample_rate in VAD_RATES else ASR_RATE
        self._stream = (
            soxr.ResampleStream(sample_rate, ASR_RATE, 1, dtype="float32", quality="HQ")
            if self.vad_rate != sample_rate
            else None
        )
        self.vad = StreamingVad(
            vad, call_id=call_id, channel=channel, role=role, sample_rate=self.vad_rate
        )
        self.samples = 0  # at the source rate
        self.gaps = 0
        self._last_sound = 0  # samples up to the last one above digital silence

    @property
    def seconds(self) -> float:
        return self.samples / self.rate

    def _gap(self, chunk: AudioChunk) -> int:
        """Samples of silence to fill before ``chunk`` (a clock gap > 20 ms, <= MAX_GAP_S)."""
        gap = int(round(chunk.start * self.rate)) - self.samples
        return gap if self.rate // 50 < gap <= MAX_GAP_S * self.rate else 0

    def seconds_after(self, chunk: AudioChunk) -> float:
        """This channel's clock once ``chunk`` is taken (gap filling included)."""
        return (self.samples + self._gap(chunk) + len(chunk.samples)) / self.rate

    def push(self, chunk: AudioChunk) -> list[SpeechSegment]:
        data = chunk.samples
        gap = self._gap(chunk)
        if gap:
            data = np.concatenate([np.zeros(gap, dtype=np.float32), data])
            self.gaps += 1
        sound = np.flatnonzero(np.abs(data) > DIGITAL_SILENCE)
        if len(sound):
            self._last_sound = self.samples + int(sound[-1]) + 1
        self.samples += len(data)
        if self._stream is not None:
            data = self._stream.resample_chunk(data)
        return [self._to_asr(s) for s in self.vad.push(data)]

    @property
    def end(self) -> float:
        """When this side's audio ended, as the recorded path sees it
        (:func:`~qa_pipeline.audio.channel_end`): a side that hung up while the line went on
        carries digital silence from then on."""
        if (self.samples - self._last_sound) / self.rate < MIN_HANGUP_SILENCE_S:
            return self.seconds
        return self._last_sound / self.rate

    def flush(self) -> list[SpeechSegment]:
        return [self._to_asr(s) for s in self.vad.flush()]

    def _to_asr(self, seg: SpeechSegment) -> SpeechSegment:
        if seg.sample_rate == ASR_RATE:
            return seg
        return replace(
            seg, samples=resample(seg.samples, seg.sample_rate, ASR_RATE), sample_rate=ASR_RATE
        )


class CallSegmenter:
    """Every channel of one call: audio in, closed speech segments out (16 kHz)."""

    def __init__(self, vad: VadConfig, call: CallInfo, sample_rate: int) -> None:
        self.channels = [
            ChannelInput(vad, call_id=call.call_id, channel=ch, role=role, sample_rate=sample_rate)
            for ch, role in enumerate(call.channels)
        ]

    @property
    def clock(self) -> float:
        """The call's media clock: the furthest channel's, in seconds."""
        return max((c.seconds for c in self.channels), default=0.0)

    def seconds_after(self, chunk: AudioChunk) -> float | None:
        """The clock of ``chunk``'s channel once it is taken (None: no such channel)."""
        if not 0 <= chunk.channel < len(self.channels):
            return None
        return self.channels[chunk.channel].seconds_after(chunk)

    def push(self, chunk: AudioChunk) -> list[SpeechSegment]:
        if not 0 <= chunk.channel < len(self.channels):
            raise ValueError(f"channel {chunk.channel} of a {len(self.channels)}-channel call")
        return self.channels[chunk.channel].push(chunk)

    def flush(self) -> list[SpeechSegment]:
        """End of audio: close every channel's open segment (in the order they end)."""
        segs = [s for c in self.channels for s in c.flush()]
        segs.sort(key=lambda s: (s.end, s.channel))
        return segs

    def channel_ends(self) -> tuple[float, ...]:
        """When each side's audio ended (who hung up first), to the millisecond."""
        return tuple(round(c.end, 3) for c in self.channels)
