"""The recorded-call encoder window (asr.window): fitted (default) and full on real speech."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa_pipeline.asr.fitted import fitted_window, window_features
from qa_pipeline.evaluation import cer_counts
from qa_pipeline.messages import Role, SpeechSegment

pytestmark = pytest.mark.slow

CLIP = "zh/funasr_asr_example_zh.wav"


def test_window_seconds() -> None:
    assert fitted_window(3.0, 15, 1.0) == 15
    assert fitted_window(14.2, 15, 1.0) == 16
    assert fitted_window(29.5, 15, 1.0) == 30


def test_window_features_are_what_faster_whisper_encodes() -> None:
    """Whisper's 30 s window holds the log-mel faster-whisper gives its encoder (the audio's
    own log-mel, zero frames after it); a shorter window the audio padded with silence."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.feature_extractor import FeatureExtractor

    fe = FeatureExtractor()
    t = np.arange(int(3.2 * 16000)) / 16000
    audio = (0.1 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    ours = window_features(fe, audio, 30)
    theirs = pad_or_trim(fe(audio)[:, :-1])  # what WhisperModel.transcribe encodes
    np.testing.assert_array_equal(ours, theirs)
    assert not ours[:, 320:].any()
    short = window_features(fe, audio, 10)
    assert short.shape == (80, 1000) and short.dtype == np.float32
    floor = short[:, 400:]  # silence: every frame at the window's floor (its max - 8, scaled)
    assert np.allclose(floor, (short.max() * 4 - 4 - 8 + 4) / 4, atol=1e-5)
    np.testing.assert_allclose(short[:, :300], ours[:, :300], atol=0.05)  # the same speech
    long = np.tile(audio, 5)  # 16 s into a 10 s window: cut, not wrapped
    assert window_features(fe, long, 10).shape == (80, 1000)
    assert not window_features(fe, np.zeros(0, np.float32), 30).any()


def _segment(speech_dir: Path, name: str) -> SpeechSegment:
    from audio_helpers import read_clip

    a = read_clip(speech_dir, name)
    return SpeechSegment("t", 0, Role.AGENT, 0.0, len(a) / 16000, a)


def test_fitted_and_full_decode_the_same_clip(
    engine: Any, manifest: list[dict[str, Any]], speech_dir: Path
) -> None:
    ref = next(c["text"] for c in manifest if c["audio"] == CLIP)
    seg = _segment(speech_dir, CLIP)
    fitted = engine.with_options(window="fitted").transcribe_segment(seg)
    full = engine.with_options(window="full").transcribe_segment(seg)
    for r in (fitted, full):
        errors, n = cer_counts(ref, r.text)
        assert errors / n < 0.3, r.text
        assert r.language == "zh" and 0 < r.confidence <= 1 and r.dropped_reason is None
    assert engine.with_options(window="full").settings.keys().isdisjoint({"window"})
    assert engine.with_options(window="fitted").settings["min_window_seconds"] == 30.0


def test_fitted_detects_the_language(
    engine: Any, manifest: list[dict[str, Any]], speech_dir: Path
) -> None:
    detect = engine.with_options(window="fitted", language=None)
    en = next(c["audio"] for c in manifest if c["lang"] == "en")
    assert detect.transcribe_segment(_segment(speech_dir, en)).language == "en"
    assert detect.transcribe_segment(_segment(speech_dir, CLIP)).language == "zh"
