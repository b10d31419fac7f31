"""Re-score fixtures: a small directory of real-speech calls, a counting fake ASR engine."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from audio_helpers import read_clip, write_call

from qa_pipeline.asr.bias import bias_version, told_terms
from qa_pipeline.asr.engine import AsrResult
from qa_pipeline.config import PipelineConfig, load_config
from qa_pipeline.messages import SpeechSegment
from qa_pipeline.pipeline import Pipeline
from qa_pipeline.store import asr_settings
from qa_pipeline.testing import FakeDecoder

CALLS = {
    # call id: (duration, [(channel, start, clip)], metadata)
    "rs-call-1": (
        16.0,
        [
            (0, 0.5, "zh/aishell1_BAC009S0764W0121.wav"),
            (1, 5.6, "zh/paddlespeech_zh.wav"),
            (0, 11.4, "zh/aishell1_BAC009S0724W0121.wav"),
        ],
        {"agent_id": "A01", "started_at": "2026-03-02T10:00:00"},
    ),
    "rs-call-2": (
        9.0,
        [(0, 0.5, "zh/aishell2_IT0011W0001.wav"), (1, 3.2, "zh/aishell1_BAC009S0764W0121.wav")],
        {"agent_id": "A02", "started_at": "2026-03-03T15:30:00"},
    ),
}


@pytest.fixture(scope="module")
def calls_dir(speech_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short dual-channel calls built from the real clips, with metadata sidecars."""
    d = tmp_path_factory.mktemp("calls")
    for cid, (duration, placements, meta) in CALLS.items():
        write_call(
            d / f"{cid}.wav",
            [(ch, st, read_clip(speech_dir, clip)) for ch, st, clip in placements],
            duration,
        )
        (d / f"{cid}.json").write_text(
            json.dumps({"call": {"call_id": cid, **meta}}), encoding="utf-8"
        )
    return d


class FakeEngine:
    """Stands in for AsrEngine: same settings, a fixed text per segment (the shared fake
    decoder), counts decodes."""

    def __init__(self, config: PipelineConfig) -> None:
        # fixed texts: no audio to verify a missing phrase against (qa_pipeline/verify.py)
        self.config = config.asr.model_copy(update={"verify": False})
        self.settings = asr_settings(config.asr)
        self.calls = 0
        self.decoder = FakeDecoder(
            lambda s, _: (
                "您好，请问有什么可以帮您" if s.role.value == "agent" else "我想查一下话费"
            ),
            confidence=0.9,
        )
        self.bias: tuple[str, ...] = ()

    @property
    def provenance(self) -> dict[str, object]:
        return {"bias_version": bias_version(told_terms(self.config, self.bias))}

    def with_bias(self, bias: tuple[str, ...]) -> FakeEngine:
        self.bias = bias  # one engine: the counts stay in one place
        return self

    @property
    def segments(self) -> int:
        return self.decoder.count

    def transcribe_many(
        self, segments: Iterable[SpeechSegment], on_result: Any = None
    ) -> Iterator[AsrResult]:
        self.calls += 1
        yield from self.decoder.transcribe_many(segments, on_result)


@pytest.fixture
def fake_pipeline() -> tuple[Pipeline, FakeEngine]:
    cfg = load_config()
    eng = FakeEngine(cfg)
    return Pipeline(cfg, engine=eng), eng  # type: ignore[arg-type]
