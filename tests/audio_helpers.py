"""Helpers for tests that build calls out of the real speech clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def read_clip(speech_dir: Path, name: str) -> np.ndarray:
    """A shared clip as 16 kHz mono float32."""
    from qa_pipeline.audio import load_call

    return load_call(speech_dir / name).channels[0]


def write_call(
    path: Path,
    placements: list[tuple[int, float, np.ndarray]],
    duration: float,
    *,
    rate: int = 16000,
    subtype: str = "PCM_16",
    channels: int = 2,
    noise_dbfs: float = -60.0,
) -> Path:
    """Write a multi-channel call: each placement is (channel, start seconds, 16 kHz audio)."""
    import soxr

    n = int(duration * rate)
    rng = np.random.default_rng(7)
    data = (rng.standard_normal((n, channels)) * 10 ** (noise_dbfs / 20)).astype(np.float32)
    for ch, start, audio in placements:
        a = audio if rate == 16000 else soxr.resample(audio, 16000, rate).astype(np.float32)
        i = int(start * rate)
        data[i : i + len(a), ch] += a[: max(0, n - i)]
    sf.write(str(path), np.clip(data, -1, 1), rate, subtype=subtype)
    return path
