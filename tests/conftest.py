"""Shared fixtures: the real speech clips in ../shared/data, one loaded model per session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SHARED_SPEECH = REPO.parent / "shared" / "data" / "speech"


def load_manifest() -> list[dict[str, Any]]:
    path = SHARED_SPEECH / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    if not (SHARED_SPEECH / "manifest.jsonl").is_file():
        pytest.skip(
            f"real speech clips not available: {SHARED_SPEECH} is absent "
            "(they live in the team's shared/ folder, not in the repository)"
        )
    return SHARED_SPEECH


@pytest.fixture(scope="session")
def manifest(speech_dir: Path) -> list[dict[str, Any]]:
    return load_manifest()


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    """One Whisper model for the whole session (loading it costs ~1 s)."""
    from qa_pipeline.asr.engine import AsrEngine
    from qa_pipeline.config import AsrConfig

    return AsrEngine(AsrConfig())


@pytest.fixture(scope="session")
def pipeline(engine):  # type: ignore[no-untyped-def]
    from qa_pipeline.config import load_config
    from qa_pipeline.pipeline import Pipeline

    return Pipeline(load_config(), engine=engine)


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
