"""The recorded-call encoder window (asr.window): fitted (default) and full on real speech."""

from pathlib import Path
from typing import Any

import pytest

from qa_pipeline.asr.fitted import fitted_window
from qa_pipeline.evaluation import cer_counts
from qa_pipeline.messages import Role, SpeechSegment

pytestmark = pytest.mark.slow

CLIP = "zh/funasr_asr_example_zh.wav"


def test_window_seconds() -> None:
    assert fitted_window(3.0, 15, 1.0) == 15
    assert fitted_window(14.2, 15, 1.0) == 16
    assert fitted_window(29.5, 15, 1.0) == 30


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
    assert engine.with_options(window="fitted").settings["min_window_seconds"] == 15.0


def test_fitted_detects_the_language(
    engine: Any, manifest: list[dict[str, Any]], speech_dir: Path
) -> None:
    detect = engine.with_options(window="fitted", language=None)
    en = next(c["audio"] for c in manifest if c["lang"] == "en")
    assert detect.transcribe_segment(_segment(speech_dir, en)).language == "en"
    assert detect.transcribe_segment(_segment(speech_dir, CLIP)).language == "zh"
