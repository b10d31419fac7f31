"""Reading recorded calls: decode, check, split channels, resample once to 16 kHz.

WAV (PCM 8/16/24/32-bit, float, mu-law, A-law), FLAC, OGG and other libsndfile formats
are read with soundfile; anything else (MP3, M4A, ...) with PyAV (FFmpeg). Every problem
is an :class:`~qa_pipeline.errors.AudioError` that names the file.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr
from pydantic import BaseModel, ConfigDict, Field

from .errors import AudioError
from .messages import Role, Samples

TARGET_RATE = 16000


class AudioConfig(BaseModel):
    """How channels of a recording map to roles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: tuple[Role, ...] = Field(
        default=(Role.AGENT, Role.CUSTOMER),
        description="Role of each channel, in order. A mono file is one 'unknown' speaker.",
    )
    min_level_dbfs: float = Field(
        default=-70.0, description="A file whose peak is below this is reported as silent."
    )
    mono_roles: Literal["auto", "off"] = Field(
        default="auto",
        description="mono recordings: 'auto' = tell two voices apart and name the agent from "
        "the pack's agent phrases and the call direction (qa_pipeline/roles.py), roles left "
        "unknown when the evidence is weak; 'off' = every utterance an unknown speaker",
    )
    mono_split_ms: int = Field(
        default=300,
        ge=30,
        description="mono, auto: a pause this long may be a change of speaker (the channel is "
        "cut there into pieces whose voices are compared)",
    )
    mono_min_separation: float = Field(
        default=1.35,
        ge=0.0,
        description="mono, auto: how far apart two voices must be to be told apart (centre "
        "distance over the spread within them, relative to the same split of one voice: 1 = "
        "no more apart than one voice); below it roles stay unknown. Set on the corpus's "
        "development seed: calls at <= 1.20 had 7-72 % of their speech on the wrong side or "
        "unknown, calls at >= 1.47 at most 4 % wrong",
    )
    mono_min_margin: float = Field(
        default=2.0,
        ge=1.0,
        description="mono, auto: the agent's voice must say the phrases of this many more "
        "agent rules of the pack than the other (the direction's first speaker counts one)",
    )


@dataclass(frozen=True, slots=True, eq=False)
class CallAudio:
    """A decoded recording: one float32 array per channel at 16 kHz. A source below 16 kHz
    also keeps its own samples (``source_channels``, at ``source_rate``): what the ASR
    decodes is resampled from them around each segment (:func:`asr_cut`)."""

    source: str
    channels: tuple[Samples, ...]
    roles: tuple[Role, ...]
    source_rate: int
    source_format: str
    sample_rate: int = TARGET_RATE
    source_channels: tuple[Samples, ...] | None = None

    @property
    def duration(self) -> float:
        return len(self.channels[0]) / self.sample_rate if self.channels else 0.0


def level_dbfs(samples: Samples) -> float:
    """RMS level in dBFS (-inf for digital silence)."""
    if samples.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


DIGITAL_SILENCE = 1e-5  # below any line noise (-100 dBFS): nothing was on the line
MIN_HANGUP_SILENCE_S = 0.5


def channel_end(samples: Samples, sample_rate: int) -> float:
    """When a channel's audio ends: the end of its last non-silent sample when it is followed
    by at least :data:`MIN_HANGUP_SILENCE_S` of digital silence (a side that hung up while
    the recording went on carries nothing at all, not even line noise), else its length."""
    n = len(samples)
    loud = np.flatnonzero(np.abs(samples) > DIGITAL_SILENCE)
    last = int(loud[-1]) + 1 if len(loud) else 0
    if (n - last) / sample_rate < MIN_HANGUP_SILENCE_S:
        return n / sample_rate
    return last / sample_rate


def peak_dbfs(samples: Samples) -> float:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def _check_riff(path: Path, data: bytes) -> None:
    """Detect truncated WAV files: a declared chunk longer than the bytes present."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        return
    if data[:4] == b"RF64":
        return  # sizes live in the ds64 chunk; libsndfile checks these
    pos = 12
    saw_fmt = False
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = pos + 8
        if cid == b"fmt ":
            saw_fmt = True
        if cid == b"data":
            if not saw_fmt:
                raise AudioError(str(path), "corrupt WAV: data chunk before format chunk")
            present = len(data) - body
            if size != 0xFFFFFFFF and size > present:
                raise AudioError(
                    str(path),
                    f"truncated WAV: header declares {size} bytes of audio, file has {present}",
                )
            return
        pos = body + size + (size & 1)
    raise AudioError(str(path), "corrupt or truncated WAV: no audio data chunk")


def _read_soundfile(path: Path) -> tuple[np.ndarray, int, str] | None:
    """Decode with libsndfile; None when it cannot (then PyAV is tried)."""
    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            fmt = f"{f.format}/{f.subtype}"
            declared = f.frames
            audio = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError):
        return None  # not a libsndfile format (or broken): let FFmpeg try, it reports
    if declared > 0 and audio.shape[0] < declared:
        raise AudioError(
            str(path), f"truncated audio: {audio.shape[0]} of {declared} declared frames readable"
        )
    return audio, rate, fmt


def _read_av(path: Path) -> tuple[np.ndarray, int, str]:
    import av

    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(str(path), "not an audio file (no audio stream)")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or 0)
            nch = int(stream.codec_context.channels or 1)
            fmt = f"{container.format.name}/{stream.codec_context.name}"
            resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
            parts: list[np.ndarray] = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray())
            for out in resampler.resample(None):
                parts.append(out.to_ndarray())
    except AudioError:
        raise
    except (av.error.InvalidDataError, av.error.EOFError) as e:
        raise AudioError(str(path), "not an audio file or corrupt (cannot decode)") from e
    except av.error.FFmpegError as e:
        raise AudioError(str(path), f"cannot decode audio ({e})") from e
    if not parts or rate <= 0:
        raise AudioError(str(path), "contains no audio samples")
    planar = np.concatenate(parts, axis=1).astype(np.float32)
    return planar.T.reshape(-1, nch) if planar.shape[0] == nch else planar.T, rate, fmt


def read_source(path: str | Path) -> tuple[np.ndarray, int]:
    """A recording's samples at its own rate (frames x channels, float32) and that rate, for
    what must travel at the source rate (``qa-pipeline ingest``). Only decodes: read the
    file with :func:`load_call` first for its checks."""
    p = Path(path)
    got = _read_soundfile(p)
    audio, rate, _fmt = got if got is not None else _read_av(p)
    return audio, rate


#: source audio on each side of a segment that its 16 kHz samples are resampled with (the
#: resampler's filter reaches about 25 ms; with 100 ms the samples inside equal the whole
#: channel's resampling but for float rounding)
ASR_CONTEXT_S = 0.1


@dataclass(frozen=True, slots=True)
class AsrCut:
    """Where a segment's ASR samples come from: source samples ``[a, b)`` (the segment and
    up to :data:`ASR_CONTEXT_S` around it), resampled to 16 kHz, then ``keep`` samples
    from ``trim`` on."""

    a: int
    b: int
    trim: int
    keep: int


def asr_cut(rate: int, n_source: int, start16: int, n16: int) -> AsrCut:
    """The cut for the 16 kHz samples ``[start16, start16 + n16)`` of a source at ``rate``
    (below 16 kHz) holding ``n_source`` samples. The recorded pipeline and an ASR worker fed
    by ``ingest`` (which sends the source samples ``[a, b)``) resample the same samples the
    same way, so they decode the same float32 audio bit for bit."""
    i0 = start16 * rate // TARGET_RATE
    i1 = -(-(start16 + n16) * rate // TARGET_RATE)
    pad = round(ASR_CONTEXT_S * rate)
    a, b = max(0, i0 - pad), min(n_source, i1 + pad)
    return AsrCut(a, b, start16 - round(a * TARGET_RATE / rate), n16)


def resample_cut(samples: Samples, rate: int, trim: int, keep: int) -> Samples:
    """``samples`` (a cut's source samples) at 16 kHz, ``keep`` of them from ``trim`` on
    (zeros past the end of the source)."""
    y = resample(samples, rate)[max(0, trim) : max(0, trim) + keep]
    if len(y) < keep:
        y = np.concatenate([y, np.zeros(keep - len(y), dtype=np.float32)])
    return np.ascontiguousarray(y, dtype=np.float32)


def resample(samples: Samples, rate: int, target: int = TARGET_RATE) -> Samples:
    if rate == target:
        return np.ascontiguousarray(samples, dtype=np.float32)
    out = soxr.resample(samples, rate, target, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def load_call(
    path: str | Path,
    roles: tuple[Role, ...] = (Role.AGENT, Role.CUSTOMER),
    *,
    min_level_dbfs: float = -70.0,
) -> CallAudio:
    """Decode a recording, check it, map channels to roles and resample to 16 kHz.

    A mono file is one ``unknown`` speaker. Raises :class:`AudioError` for a missing,
    empty, non-audio, corrupt, truncated or silent file.
    """
    p = Path(path)
    src = str(p)
    if not p.exists():
        raise AudioError(src, "no such file")
    if p.is_dir():
        raise AudioError(src, "is a directory, not an audio file")
    data = p.read_bytes()
    if not data:
        raise AudioError(src, "file is empty (0 bytes)")
    _check_riff(p, data)
    got = _read_soundfile(p)
    audio, rate, fmt = got if got is not None else _read_av(p)
    if audio.size == 0 or audio.shape[0] == 0:
        raise AudioError(src, "contains no audio samples")
    if not np.all(np.isfinite(audio)):
        raise AudioError(src, "corrupt audio: non-finite sample values")
    if rate < 4000 or rate > 384000:
        raise AudioError(src, f"unsupported sample rate {rate} Hz")
    nch = audio.shape[1]
    if nch == 1:
        mapped: tuple[Role, ...] = (Role.UNKNOWN,)
    else:
        mapped = tuple(roles[i] if i < len(roles) else Role.UNKNOWN for i in range(nch))
    if peak_dbfs(audio) < min_level_dbfs:
        raise AudioError(src, f"silent: no signal above {min_level_dbfs:.0f} dBFS on any channel")
    own = tuple(np.ascontiguousarray(audio[:, c], dtype=np.float32) for c in range(nch))
    channels = tuple(resample(x, rate) for x in own)
    return CallAudio(
        source=src,
        channels=channels,
        roles=mapped,
        source_rate=rate,
        source_format=fmt,
        source_channels=own if rate < TARGET_RATE else None,
    )
