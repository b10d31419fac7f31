"""The serve config file, and the replay source's real-time pacing (no model)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from qa_pipeline.errors import ConfigError
from qa_pipeline.live.config import (
    AudioSocketSourceConfig,
    WebSocketSourceConfig,
    load_serve_config,
)
from qa_pipeline.sources.base import EndReason
from qa_pipeline.sources.replay import ReplaySource
from qa_pipeline.testing import Recorder

REPO = Path(__file__).resolve().parents[2]


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "0123456789abcdef")  # the example reads it
    cfg = load_serve_config(REPO / "configs" / "serve.example.yaml")
    kinds = [type(s) for s in cfg.sources]
    assert kinds == [WebSocketSourceConfig, AudioSocketSourceConfig]
    assert cfg.live.window == "fitted" and cfg.live.overflow == "drop_oldest"


def test_config_errors_are_all_reported_with_lines(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(
        "sources:\n  - {type: websocket, port: 99999}\n  - {type: carrier-pigeon}\n"
        "live:\n  window: half\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as e:
        load_serve_config(p)
    text = str(e.value)
    assert "port" in text and "carrier-pigeon" in text and "window" in text
    assert f"{p}:5" in text


def test_duplicate_source_names(tmp_path: Path) -> None:
    p = tmp_path / "dup.yaml"
    p.write_text("sources: [{type: websocket}, {type: websocket, port: 1}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="duplicate"):
        load_serve_config(p)


def test_replay_paces_at_speed(tmp_path: Path) -> None:
    wav = tmp_path / "call-9.wav"
    sf.write(str(wav), (np.random.default_rng(1).standard_normal((8000, 2)) * 0.1), 8000)
    rec = Recorder(strict=True)

    async def main() -> float:
        src = ReplaySource([wav], speed=4.0, chunk_ms=100)
        t0 = time.monotonic()
        await src.start(rec)
        await asyncio.wait_for(src.done.wait(), 5)
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert [c.call_id for c in rec.started] == ["call-9"]
    assert rec.ended == [("call-9", EndReason.EOF)]
    chunks = rec.chunks
    assert {c.channel for c in chunks} == {0, 1}
    assert sum(len(c.samples) for c in chunks if c.channel == 0) == 16000  # 1 s at 16 kHz
    assert 0.2 <= took < 1.0  # 1 s of audio at 4x
